import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VirtError } from '../../src/virt/errors.js';
import { MiB, type PlannerDimm, planMemory } from '../../src/virt/planner.js';

const hp = (alias: string, size: number, state: PlannerDimm['state'] = 'plugged'): PlannerDimm => ({
  alias,
  size,
  state,
  hotplugged: true,
});

describe('planMemory', () => {
  const example = [hp('a', 256), hp('b', 256), hp('c', 128), hp('d', 128)];

  it('worked example: 1792 -> 1400 MiB unplugs one 256 and one 128 (ends at 1408)', () => {
    const plan = planMemory(1792, example, 1400 * MiB, 128);
    expect(plan).toEqual({
      kind: 'decrease',
      requested: 1400,
      decrement: 392,
      unplug: [
        { alias: 'a', size: 256 },
        { alias: 'c', size: 128 },
      ],
      skipped: [],
    });
  });

  it('takes DIMMs whose sum reaches the decrement exactly: 1792 -> 1408 MiB unplugs 256 + 128', () => {
    expect(planMemory(1792, example, 1408 * MiB, 128)).toMatchObject({
      decrement: 384,
      unplug: [
        { alias: 'a', size: 256 },
        { alias: 'c', size: 128 },
      ],
    });
  });

  it('floors bytes to MiB', () => {
    expect(planMemory(1792, example, 1400 * MiB + MiB - 1, 128)).toMatchObject({ requested: 1400 });
  });

  it('skips unplugging and boot-time DIMMs', () => {
    const dimms = [hp('a', 256, 'unplugging'), { ...hp('b', 256), hotplugged: false }, hp('c', 128)];
    expect(planMemory(1792, dimms, 1400 * MiB, 128)).toMatchObject({ unplug: [{ alias: 'c', size: 128 }] });
  });

  it('returns an empty pick when nothing fits', () => {
    expect(planMemory(1792, example, 1700 * MiB, 128)).toMatchObject({ kind: 'decrease', unplug: [] });
  });

  it('equal: no change; increase: one DIMM of the difference, aligned', () => {
    expect(planMemory(1024, [], 1024 * MiB, 128)).toEqual({ kind: 'none', requested: 1024 });
    expect(planMemory(1024, [], 1280 * MiB, 128)).toEqual({
      kind: 'increase',
      requested: 1280,
      plugSize: 256,
    });
    try {
      planMemory(1024, [], 1100 * MiB, 128);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(VirtError);
      expect((err as VirtError).details).toMatchObject({ field: 'memory' });
    }
  });

  const dimmArb = fc.record({
    alias: fc.string({ minLength: 1, maxLength: 6 }),
    size: fc.constantFrom(128, 256, 384, 512, 1024),
    state: fc.constantFrom<'plugged' | 'unplugging'>('plugged', 'unplugging'),
    hotplugged: fc.boolean(),
  });
  const caseArb = fc
    .record({
      base: fc.integer({ min: 256, max: 4096 }),
      dimms: fc.array(dimmArb, { maxLength: 12 }),
      cut: fc.integer({ min: 1, max: 8192 }),
    })
    .map(({ base, dimms, cut }) => {
      const current = base + dimms.reduce((s, d) => s + d.size, 0);
      return { current, dimms, requested: Math.max(1, current - cut) };
    });

  it('never exceeds the decrement, never picks unplugging or boot-time DIMMs, is deterministic', () => {
    fc.assert(
      fc.property(caseArb, ({ current, dimms, requested }) => {
        const plan = planMemory(current, dimms, requested * MiB, 128);
        if (plan.kind !== 'decrease') return;
        const total = plan.unplug.reduce((s, u) => s + u.size, 0);
        expect(total).toBeLessThanOrEqual(plan.decrement);
        for (const u of plan.unplug) {
          const matches = dimms.filter((d) => d.alias === u.alias && d.size === u.size);
          expect(matches.some((d) => d.state === 'plugged' && d.hotplugged)).toBe(true);
        }
        expect(planMemory(current, dimms, requested * MiB, 128)).toEqual(plan);
      }),
    );
  });

  it('is the largest-first greedy set (stable for equal sizes)', () => {
    fc.assert(
      fc.property(caseArb, ({ current, dimms, requested }) => {
        const plan = planMemory(current, dimms, requested * MiB, 128);
        if (plan.kind !== 'decrease') return;
        // Reference: index-based, so equal sizes keep their input order.
        const idx = dimms
          .map((d, i) => ({ d, i }))
          .filter(({ d }) => d.hotplugged && d.state === 'plugged' && d.size <= plan.decrement)
          .sort((a, b) => b.d.size - a.d.size || a.i - b.i);
        const expected: { alias: string; size: number }[] = [];
        let sum = 0;
        for (const { d } of idx) {
          if (sum + d.size <= plan.decrement) {
            expected.push({ alias: d.alias, size: d.size });
            sum += d.size;
          }
        }
        expect(plan.unplug).toEqual(expected);
        // Greedy is maximal: no remaining candidate would still fit.
        const left = idx.filter(
          ({ d }) => !plan.unplug.some((u) => u.alias === d.alias && u.size === d.size),
        );
        for (const { d } of left) expect(sum + d.size).toBeGreaterThan(plan.decrement);
      }),
    );
  });
});

describe('planMemory with what the guest says of each DIMM', () => {
  const z = (alias: string, size: number, zone: PlannerDimm['zone']): PlannerDimm => ({
    ...hp(alias, size),
    ...(zone ? { zone } : {}),
  });

  it('skips DIMMs held in ZONE_NORMAL (normal or mixed) and lists them; takes the movable ones', () => {
    const dimms = [
      z('n', 256, 'normal'),
      z('m', 256, 'movable'),
      z('x', 128, 'mixed'),
      z('o', 128, 'offline'),
    ];
    expect(planMemory(1792, dimms, 1408 * MiB, 128)).toMatchObject({
      decrement: 384,
      unplug: [
        { alias: 'm', size: 256 },
        { alias: 'o', size: 128 },
      ],
      skipped: [
        { alias: 'n', size: 256, reason: 'not-movable' },
        { alias: 'x', size: 128, reason: 'not-movable' },
      ],
    });
  });

  it('prefers DIMMs the guest can give back over unknown ones, even when smaller', () => {
    const dimms = [z('u', 256, 'unknown'), z('m', 128, 'movable'), z('u2', 128, undefined)];
    expect(planMemory(1792, dimms, 1536 * MiB, 128)).toMatchObject({
      decrement: 256,
      unplug: [
        { alias: 'm', size: 128 },
        { alias: 'u2', size: 128 },
      ],
      skipped: [],
    });
  });

  it('force plans as if every DIMM were movable (the feature page plan)', () => {
    const dimms = [z('n', 256, 'normal'), z('m', 128, 'movable')];
    expect(planMemory(1408, dimms, 1024 * MiB, 128, { force: true })).toMatchObject({
      unplug: [
        { alias: 'n', size: 256 },
        { alias: 'm', size: 128 },
      ],
      skipped: [],
    });
    expect(planMemory(1408, dimms, 1024 * MiB, 128)).toMatchObject({
      unplug: [{ alias: 'm', size: 128 }],
      skipped: [{ alias: 'n', size: 256, reason: 'not-movable' }],
    });
  });

  it('all zones alike (or all unknown): the same plan as without zones', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(128, 256, 512), { maxLength: 8 }),
        fc.integer({ min: 0, max: 4096 }),
        fc.constantFrom<PlannerDimm['zone']>('movable', 'unknown', 'offline', undefined),
        (sizes, dec, zone) => {
          const plain = sizes.map((s, i) => hp(`d${i}`, s));
          const zoned = sizes.map((s, i) => z(`d${i}`, s, zone));
          const total = 1024 + sizes.reduce((a, b) => a + b, 0);
          const req = Math.max(1, total - dec) * MiB;
          expect(planMemory(total, zoned, req, 128)).toEqual(planMemory(total, plain, req, 128));
        },
      ),
    );
  });
});
