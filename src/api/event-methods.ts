// Host.getEvents: the kept notifications after a sequence number, for an
// engine that resumes after a reconnect (or polls). The journal itself lives
// in the transport layer; this is its method front.
import type { EventsPage, ResumePoint } from '../rpc/event-journal.js';
import type { MethodSpec } from '../rpc/method.js';

export interface EventSource {
  page(resume: ResumePoint): EventsPage;
}

const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

export const eventsPageSchema = {
  type: 'object',
  description:
    'Kept notifications with seq > since, oldest first. bootChanged: the bootId given is not this boot (events are all this boot kept). gap: some events after the point were dropped by the bounds (last 10,000, 24 h).',
  properties: {
    bootId: { type: 'string' },
    lastSeq: { type: 'integer' },
    oldestSeq: { type: 'integer' },
    bootChanged: { type: 'boolean' },
    gap: { type: 'boolean' },
    events: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          seq: { type: 'integer' },
          time: { type: 'integer', description: 'ms since the epoch' },
          method: { type: 'string' },
          params: {},
        },
        required: ['seq', 'time', 'method', 'params'],
      },
    },
  },
  required: ['bootId', 'lastSeq', 'oldestSeq', 'bootChanged', 'gap', 'events'],
};

export function eventMethods(events: EventSource): MethodSpec[] {
  const getEvents: MethodSpec<{ since: number; bootId?: string }, EventsPage> = {
    name: 'Host.getEvents',
    logLevel: 'debug',
    summary: 'Notifications kept after sequence number `since` (of boot `bootId`), to resume without loss.',
    params: {
      type: 'object',
      properties: {
        since: {
          type: 'integer',
          minimum: 0,
          maximum: Number.MAX_SAFE_INTEGER,
          description: 'the last seq the client processed (0: everything kept)',
        },
        bootId: { type: 'string', pattern: UUID_PATTERN, description: 'the bootId that seq belongs to' },
      },
      required: ['since'],
      additionalProperties: false,
    },
    result: eventsPageSchema,
    handler: async (p) =>
      events.page(p.bootId === undefined ? { since: p.since } : { since: p.since, bootId: p.bootId }),
  };
  return [getEvents] as MethodSpec[];
}
