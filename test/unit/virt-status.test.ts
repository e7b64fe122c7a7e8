import { describe, expect, it } from 'vitest';
import { DomainState } from '../../src/libvirt/types.js';
import { isActive, statusOf } from '../../src/virt/status.js';

describe('statusOf', () => {
  it('maps libvirt states like VDSM', () => {
    expect(statusOf({ state: DomainState.RUNNING, reason: 1 })).toBe('Up');
    expect(statusOf({ state: DomainState.PAUSED, reason: 1 })).toBe('Paused');
    expect(statusOf({ state: DomainState.PAUSED, reason: 2 })).toBe('Migration Source');
    expect(statusOf({ state: DomainState.SHUTDOWN, reason: 1 })).toBe('Powering down');
    expect(statusOf({ state: DomainState.SHUTOFF, reason: 1 })).toBe('Down');
    expect(isActive({ state: DomainState.SHUTOFF, reason: 0 })).toBe(false);
    expect(isActive({ state: DomainState.PAUSED, reason: 2 })).toBe(true);
  });
});
