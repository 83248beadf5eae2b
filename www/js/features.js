// WebAssembly features a build of the engine needs beyond what every browser with WebGPU has.

/** One function, `() -> v128`, that splats 1.0 three times and calls `f32x4.relaxed_madd` (0xfd 0x105):
 *  it validates exactly where the relaxed SIMD proposal is supported. */
const RELAXED_MADD = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0,
  10, 28, 1, 26, 0, 67, 0, 0, 128, 63, 253, 19, 67, 0, 0, 128, 63, 253, 19, 67, 0, 0, 128, 63, 253, 19, 253, 133, 2, 11]);

/** Whether this browser runs relaxed SIMD, which the threaded build's matrix products use
 *  (src/model/madd.rs): a browser without it cannot compile that build. */
export const relaxedSimd = WebAssembly.validate(RELAXED_MADD);
