/** Redis Cluster has 16384 hash slots; a key (or a sharded channel) lives in exactly one. */
export const CLUSTER_SLOTS = 16384;

// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), as Redis Cluster computes it.
const TABLE = new Uint16Array(256);
for (let byte = 0; byte < 256; byte++) {
  let crc = byte << 8;
  for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  TABLE[byte] = crc;
}

/**
 * The hash slot of a key or sharded channel, as Redis computes it (`CLUSTER KEYSLOT`): CRC16 of its
 * UTF-8 bytes modulo 16384, or of the part between the first `{` and the next `}` when that part is
 * not empty (a hash tag). Channel names of object patterns hold braces (`rb:req:{"cmd":"sum"}`), so
 * hash tags do occur here and must be honoured exactly.
 */
export function keySlot(key: string): number {
  const bytes = Buffer.from(key, 'utf8');
  let start = 0;
  let end = bytes.length;
  const open = bytes.indexOf(0x7b);
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) {
      start = open + 1;
      end = close;
    }
  }
  let crc = 0;
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ bytes[i]!) & 0xff]!;
  return crc % CLUSTER_SLOTS;
}
