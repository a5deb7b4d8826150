// BTF-generated decoders against bytes laid out by clang itself: each case initialises a
// global in C, and the test decodes the object's .rodata image with the object's BTF.
import { beforeAll, describe, expect, test } from 'vitest';
import * as native from '@tslcc/native';
import { Btf, CodecFactory, compile } from '@tslcc/sdk';
import { tempDir } from '../helpers';

const SRC = `
enum color { RED = 1, GREEN = 2, BLUE = 40 };
enum big { HUGE = 0x100000000ULL };
struct inner { u16 a; s8 b; };
struct bits { u32 lo : 3; s32 neg : 5; u32 mid : 12; u64 wide : 40; };
union both { u32 word; u8 bytes[4]; };
struct all {
  u8 u8v; s8 s8v; u16 u16v; s16 s16v; u32 u32v; s32 s32v; u64 u64v; s64 s64v;
  char comm[16];
  u8 raw[4];
  struct inner in;
  struct inner many[3];
  union both un;
  enum color col;
  enum color unknown_col;
  enum big b;
  struct bits bf;
  void *ptr;
  _Bool flag;
  union { u32 anon_a; u16 anon_b; };
  unsigned __int128 u128;
  u32 long_arr[20];
};
const volatile struct all sample = {
  .u8v = 250, .s8v = -5, .u16v = 65000, .s16v = -30000, .u32v = 4000000000U, .s32v = -2000000000,
  .u64v = 18446744073709551615ULL, .s64v = -9007199254740993LL,
  .comm = "tslcc",
  .raw = { 1, 2, 3, 255 },
  .in = { .a = 7, .b = -1 },
  .many = { { 1, 2 }, { 3, 4 }, { 5, -6 } },
  .un = { .word = 0x04030201 },
  .col = BLUE,
  .unknown_col = 7,
  .b = HUGE,
  .bf = { .lo = 5, .neg = -9, .mid = 4095, .wide = 0xABCDEF0123ULL },
  .ptr = (void *)0xffff888012345678ULL,
  .flag = 1,
  .anon_a = 0x00010002,
  .u128 = ((unsigned __int128)1 << 100) + 5,
  .long_arr = { [0] = 1, [19] = 19 },
};
SEC("tp/syscalls/sys_enter_getppid") int p(void *ctx) { return sample.u8v; }
`;

describe('BTF decoders (clang layout, no kernel)', () => {
  let btf: Btf;
  let image: Buffer;
  let typeId: number;
  let offset: number;

  beforeAll(async () => {
    const c = await compile(SRC, { name: 'decode', cacheDir: tempDir('decode') });
    const obj = new native.BpfObject(c.elf, 'decode', {});
    btf = new Btf(obj.btf()!);
    const ro = obj.maps().find((m) => m.name.endsWith('.rodata'))!;
    image = obj.initialValue(ro.name)!;
    const v = btf.sectionVars('.rodata').get('sample')!;
    typeId = v.type;
    offset = v.offset;
    obj.close();
  });

  const decode = (int64: 'bigint' | 'number' = 'bigint') =>
    new CodecFactory(btf, { int64 }).decoder<Record<string, any>>(typeId)(image, new DataView(image.buffer, image.byteOffset, image.byteLength), offset);

  test('integers of every width and sign, 64-bit lossless', () => {
    const d = decode();
    expect([d.u8v, d.s8v, d.u16v, d.s16v, d.u32v, d.s32v]).toEqual([250, -5, 65000, -30000, 4000000000, -2000000000]);
    expect(d.u64v).toBe(18446744073709551615n);
    expect(d.s64v).toBe(-9007199254740993n);
    expect(d.u128).toBe((1n << 100n) + 5n);
    expect(d.flag).toBe(true);
  });

  test("int64: 'number' gives numbers", () => {
    const d = decode('number');
    expect(typeof d.u64v).toBe('number');
    expect(d.s64v).toBe(-9007199254740992); // nearest double: the documented trade-off
  });

  test('char arrays are strings, u8 arrays are numbers', () => {
    const d = decode();
    expect(d.comm).toBe('tslcc');
    expect(d.raw).toEqual([1, 2, 3, 255]);
  });

  test('nested structs, arrays of structs, long arrays', () => {
    const d = decode();
    expect(d.in).toEqual({ a: 7, b: -1 });
    expect(d.many).toEqual([{ a: 1, b: 2 }, { a: 3, b: 4 }, { a: 5, b: -6 }]);
    expect(d.long_arr).toHaveLength(20);
    expect([d.long_arr[0], d.long_arr[1], d.long_arr[19]]).toEqual([1, 0, 19]);
  });

  test('unions decode every member; anonymous members flatten into the parent', () => {
    const d = decode();
    expect(d.un).toEqual({ word: 0x04030201, bytes: [1, 2, 3, 4] });
    expect([d.anon_a, d.anon_b]).toEqual([0x00010002, 0x0002]);
  });

  test('enums decode to their value, with or without an enumerator of that value', () => {
    const d = decode();
    expect([d.col, d.unknown_col]).toEqual([40, 7]);
    // An 8-byte enum follows int64: clang >= 15 emits BTF_KIND_ENUM64, clang 14 an 8-byte
    // BTF_KIND_ENUM (its enumerator truncated); the value read from memory is the same.
    expect(d.b).toBe(4294967296n);
    expect(decode('number').b).toBe(4294967296);
  });

  test('bitfields, signed and wider than 32 bits', () => {
    expect(decode().bf).toEqual({ lo: 5, neg: -9, mid: 4095, wide: 0xabcdef0123n });
  });

  test('pointers are 64-bit addresses', () => {
    expect(decode().ptr).toBe(0xffff888012345678n);
  });

  test('encoders round-trip every field', () => {
    const codecs = new CodecFactory(btf);
    const size = btf.sizeof(typeId);
    const value = decode();
    const buf = Buffer.alloc(size);
    codecs.encoder(typeId)(value, buf, new DataView(buf.buffer, buf.byteOffset, size), 0);
    expect(buf.equals(image.subarray(offset, offset + size))).toBe(true);
  });

  test('encoders reject what they cannot encode, naming the field', () => {
    const codecs = new CodecFactory(btf);
    const buf = Buffer.alloc(btf.sizeof(typeId));
    expect(() => codecs.encoder(typeId)({ col: 'PURPLE' }, buf, new DataView(buf.buffer), 0))
      .toThrow('encode const volatile struct all.col: unknown enumerator "PURPLE"; expected one of RED, GREEN, BLUE');
    expect(() => codecs.encoder(typeId)({ u32v: 1.5 }, buf, new DataView(buf.buffer), 0))
      .toThrow('encode const volatile struct all.u32v: expected an integer (number or bigint), got 1.5');
  });

  test('the decoder is straight-line generated code, generated once per type', () => {
    const f = new CodecFactory(btf);
    expect(f.decoder(typeId)).toBe(f.decoder(typeId));
    const src = f.decoderSource(typeId);
    expect(src).toContain('"u32v": dv.getUint32(o + 8, true)');
    expect(src).not.toContain('switch');
  });
});

// Hand-built BTF for what clang 14 cannot emit: BTF_KIND_ENUM64 and signed (kflag) enums.
describe('enum decoding (hand-built BTF)', () => {
  const types: native.BtfTypes = [
    null,
    { id: 1, kind: 'enum64', name: 'big', size: 8, signed: false, values: [{ name: 'HUGE', value: 0x100000000n }, { name: 'TOP', value: 0xffffffffffffffffn }] },
    { id: 2, kind: 'enum', name: 'sgn', size: 4, signed: true, values: [{ name: 'NEG', value: -1 }, { name: 'ONE', value: 1 }] },
    { id: 3, kind: 'enum64', name: 'sbig', size: 8, signed: true, values: [{ name: 'MIN', value: -(1n << 63n) }] },
  ];
  const btf = new Btf(types);
  const at = (bytes: number[]) => { const b = Buffer.from(bytes); return [b, new DataView(b.buffer, b.byteOffset, b.byteLength)] as const; };
  const dec = (id: number, bytes: number[], int64?: 'bigint' | 'number') => new CodecFactory(btf, { int64 }).decoder(id)(...at(bytes), 0);
  const enc = (id: number, v: unknown, size: number) => { const [b, dv] = at(new Array(size).fill(0)); new CodecFactory(btf).encoder(id)(v, b, dv, 0); return [...b]; };

  test('enum64 decodes to a bigint by default, a number with int64: number', () => {
    const huge = [0, 0, 0, 0, 1, 0, 0, 0];
    expect(dec(1, huge)).toBe(4294967296n);
    expect(dec(1, huge, 'number')).toBe(4294967296);
    expect(dec(1, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])).toBe(18446744073709551615n);
    expect(dec(1, [7, 0, 0, 0, 0, 0, 0, 0])).toBe(7n); // no enumerator has that value
    expect(dec(3, [0, 0, 0, 0, 0, 0, 0, 0x80])).toBe(-(1n << 63n));
  });

  test('signed 32-bit enums decode to signed numbers', () => {
    expect(dec(2, [0xff, 0xff, 0xff, 0xff])).toBe(-1);
    expect(dec(2, [1, 0, 0, 0])).toBe(1);
    expect(dec(2, [9, 0, 0, 0])).toBe(9);
  });

  test('encoders take a number, a bigint or an enumerator name', () => {
    expect(enc(1, 'HUGE', 8)).toEqual([0, 0, 0, 0, 1, 0, 0, 0]);
    expect(enc(1, 4294967296n, 8)).toEqual([0, 0, 0, 0, 1, 0, 0, 0]);
    expect(enc(1, 4294967296, 8)).toEqual([0, 0, 0, 0, 1, 0, 0, 0]);
    expect(enc(2, 'NEG', 4)).toEqual([0xff, 0xff, 0xff, 0xff]);
    expect(enc(2, -1, 4)).toEqual([0xff, 0xff, 0xff, 0xff]);
    expect(enc(2, 9, 4)).toEqual([9, 0, 0, 0]);
    expect(() => enc(2, 'TWO', 4)).toThrow('encode enum sgn: unknown enumerator "TWO"; expected one of NEG, ONE');
  });
});
