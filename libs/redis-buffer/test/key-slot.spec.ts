import { keySlot } from '../src/core/bus/key-slot.js';

describe('keySlot', () => {
  // Expected values are what redis-server 7.0.15 answered to CLUSTER KEYSLOT.
  it.each([
    ['foo', 12182],
    ['hello', 866],
    ['rb:members', 12712],
    ['rb:who', 5523],
    ['é€😀', 8047],
  ])('hashes %s to the slot Redis gives it (%i)', (key, slot) => {
    expect(keySlot(key)).toBe(slot);
  });

  it.each([
    ['rb:req:{"cmd":"sum"}', 11385],
    ['a{b}c{d}', 3300],
  ])('hashes only the first non-empty hash tag of %s, as Redis does (%i)', (key, slot) => {
    expect(keySlot(key)).toBe(slot);
    expect(keySlot(key)).toBe(keySlot(key.slice(key.indexOf('{') + 1, key.indexOf('}'))));
  });

  it.each([
    ['rb:inbox:host-1.x{}', 14575],
    ['{}abc', 5980],
    ['{', 4092],
  ])('hashes the whole of %s when its braces hold no tag (%i)', (key, slot) => {
    expect(keySlot(key)).toBe(slot);
  });
});
