/** Frame encoding and the streaming reader. */
import { collectSink, decodeHeader, encodeHeader, fingerprint32, FrameHeader, FrameKind, FrameReader, HEADER_BYTES, PayloadSink } from '../../src/distributed/framing';

const header = (over: Partial<FrameHeader> = {}): FrameHeader => ({
  kind: FrameKind.AllReduce, step: 3, seq: 4_000_000_000, index: 77, totalElements: 7_000_000_123, fingerprint: 0xdeadbeef, payloadBytes: 12, ...over,
});

describe('framing', () => {
  test('header round trip, including element counts above 2^32', () => {
    const h = header();
    expect(decodeHeader(encodeHeader(h), 1 << 20)).toEqual(h);
    expect(encodeHeader(h).length).toBe(HEADER_BYTES);
  });

  test('garbage, unknown kinds, other versions and oversize frames are rejected', () => {
    expect(() => decodeHeader(Buffer.alloc(HEADER_BYTES, 0x41), 1 << 20)).toThrow(/bad frame magic/);
    const b = encodeHeader(header());
    b.writeUInt8(200, 5);
    expect(() => decodeHeader(b, 1 << 20)).toThrow(/unknown frame kind 200/);
    const v = encodeHeader(header());
    v.writeUInt8(9, 4);
    expect(() => decodeHeader(v, 1 << 20)).toThrow(/protocol version 9/);
    expect(() => decodeHeader(encodeHeader(header({ payloadBytes: 5000 })), 4096)).toThrow(/exceeds the limit of 4096/);
  });

  test('the reader reassembles frames split at every possible byte boundary, and stalls without a consumer', () => {
    const frames = [Buffer.from('abcdefghijkl'), Buffer.alloc(0), Buffer.from('xyz')];
    const wire = Buffer.concat(frames.flatMap((p, i) => [encodeHeader(header({ index: i, payloadBytes: p.length })), p]));
    for (let cut = 1; cut < wire.length; cut++) {
      const got: string[] = [];
      const reader = new FrameReader(1 << 20);
      reader.setHandler((h) => collectSink(h.payloadBytes, (p) => got.push(`${h.index}:${p.toString()}`)));
      reader.push(wire.subarray(0, cut));
      reader.push(wire.subarray(cut));
      expect(got).toEqual(['0:abcdefghijkl', '1:', '2:xyz']);
      expect(reader.stalled).toBe(false);
    }
    const reader = new FrameReader(1 << 20);
    const got: number[] = [];
    let accept = false;
    reader.setHandler((h): PayloadSink | null => (accept ? collectSink(h.payloadBytes, () => got.push(h.index)) : null));
    reader.push(wire);
    expect(reader.stalled).toBe(true);
    expect(got).toEqual([]);
    accept = true;
    reader.pump();
    expect(got).toEqual([0, 1, 2]);
    expect(reader.stalled).toBe(false);
  });

  test('fingerprints tell configurations apart and are stable', () => {
    expect(fingerprint32('allReduce|1000|4096|0|0|')).toBe(fingerprint32('allReduce|1000|4096|0|0|'));
    expect(fingerprint32('allReduce|1000|4096|0|0|')).not.toBe(fingerprint32('allReduce|1001|4096|0|0|'));
    expect(fingerprint32('')).toBe(0x811c9dc5);
  });
});
