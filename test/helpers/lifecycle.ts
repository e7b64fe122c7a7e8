// Driving the pure device lifecycle machine in unit tests: apply events in
// order and collect every effect.
import { type DeviceEvent, type DeviceSet, type Effect, next } from '../../src/virt/device-lifecycle.js';

export const T0 = '2026-12-01T00:00:00.000Z';

export function run(s: DeviceSet, ...events: DeviceEvent[]): { state: DeviceSet; effects: Effect[] } {
  const effects: Effect[] = [];
  let state = s;
  for (const e of events) {
    const t = next(state, e);
    state = t.state;
    effects.push(...t.effects);
  }
  return { state, effects };
}

export const of = (effects: readonly Effect[], type: Effect['type']): Effect[] =>
  effects.filter((e) => e.type === type);
