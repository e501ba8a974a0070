/**
 * Lua helper of the scripts that start, acknowledge or give up on an entry: whether the caller
 * still owns it in the group's pending list. A consumer frozen past claimIdle loses its entries to
 * a claimer without knowing; everything it then does with them must be refused here, atomically
 * with the step itself, or it would release a key's turn or start an entry the claimer runs.
 * Returns 'mine', 'lost' (pending on another consumer) or 'gone' (not pending: acknowledged).
 */
export const OWNER_LUA = `
local function ownerOf(stream, group, id, consumer)
  local pending = redis.call('XPENDING', stream, group, id, id, 1)
  if #pending == 0 then return 'gone' end
  if pending[1][2] ~= consumer then return 'lost' end
  return 'mine'
end
`;
