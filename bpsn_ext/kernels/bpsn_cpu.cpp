// Native CPU kernels of the default BPSN (leak kernel, split fusion, refractory or no rule).
//
// Loaded with ctypes by bpsn_ext/kernels/cpu_native.py (no torch headers: it compiles in 2-3 s,
// once; the library is cached).  Same maths as the torch path of
// bpsn_ext/core/bpsn_functional.py and the CUDA kernels of bpsn_kernels.cu, specialised to
// split fusion, where every neuron needs one direction only:
//
//   forward neurons  (channels c <  ceil(C/2)): H_t = lam_f[c] * H_{t-1} + m_t x_t
//   backward neurons (channels c >= ceil(C/2)): H_t = lam_b[c] * H_{t+1} + m_t x_t
//   raw_t = m_t * [H_t - thr[c] >= 0]  (> 0 without fire_ge), then the run-based refractory
//   rule (period r; r = 0: none): inside a run of raw spikes every (r+1)-th survives.
//
// Layout: every array [T, M] contiguous (M = N * features), mask [T, N] uint8 or null.
// Neurons are laid out [outer, C, inner]: inside a block of B = C * inner neurons the first
// F = ceil(C/2) * inner are forward neurons.  Time is the outer loop and neurons the inner,
// contiguous, branch-free (vectorised) one.  Threads take chunks of contiguous neurons from a
// shared counter (up to 4 chunks per thread, so a thread the OS delays holds nobody up, each
// at least 1024 neurons wide where there are enough) and run all T steps for a chunk, in tiles
// of at most 4096 neurons.  Built with -fopenmp -DBPSN_OPENMP (only against torch's own GNU
// OpenMP runtime, see cpu_openmp.py), the threads are torch's OpenMP team; else, and in a
// forked child, pthreads started per call.  Inside a tile a sweep takes one time block of
// one strip at a time (a strip: up to STRIP neurons of the tile, all of one direction), so
// that the strip's scratch rows and its per-neuron state stay in the cache for the block's
// steps.  The rows
// of x that the next strip reads are prefetched into the L2 cache while the current one
// runs, and the adjoint's rows of the gradients a few steps ahead into the L1 cache.
// Results do not depend on the chunking.
//
// What is stored: not the membrane H [T, M] but checkpoints.  Time is cut into blocks of
// CHECKPOINT_STEPS (K) steps; ckpt [ceil(T/K), M] holds, for every block, the membrane that
// enters it in the neuron's own direction (forward neurons: H at the step before the block;
// backward neurons: H at the step after it; 0 at the ends), and under the refractory rule
// since [ceil(T/K), M] the rule's counter at the block's start.  A sweep that needs H in the
// direction opposite to a neuron's recurrence recomputes the block from x and its checkpoint
// into a scratch of K rows of the strip (in cache), with the same operations in the same order
// (the build uses -ffp-contract=off), so the recomputed H is bitwise the first one.  The
// backward pass reads x (kept by autograd, no copy) and the checkpoints.  The membrane output
// (mem) is written only when it is asked for, as one extra store per step.
//
// Forward: sweep R (blocks last to first, backward neurons) runs their recurrence and keeps
// only the checkpoints; sweep F (blocks first to last) puts every block's H into the scratch
// (forward neurons from their running state, backward ones recomputed from their checkpoint,
// descending) and then writes everyone's spikes step by step, ascending.
//
// Backward (delta_t = dL/dH_t = g_t * gate_t * m_t * sg'(H_t - thr) + m_t * gmem_t):
//   sweep A (blocks first to last, backward neurons): H recomputed per block, then step by
//     step ascending the refractory gate (re-run), delta, the threshold gradient, the adjoint
//     b_t = delta_t + lam b_{t-1} (= dL/dx_t before masking) and dL/dlam_b = sum_t b_{t-1} H_t;
//   sweep B (blocks last to first, forward neurons): H and the refractory gates recomputed
//     per block ascending (from the checkpointed counter), then step by step descending delta,
//     the threshold gradient, a_t = delta_t + lam a_{t+1}, dL/dlam_f = sum_t a_{t+1} H_t.
// x is read once per sweep a neuron takes part in (forward: twice for backward neurons, once
// for forward ones; backward: once), spikes and grad_x written once, by non-temporal stores
// (a sweep over one direction writes half of every row: plain stores would first read each
// line).  Parameter gradients are summed over each time block in the working precision (float
// for float32: 32 terms) and these sums per neuron in double, then reduced per channel here.
// Large output arrays get transparent huge pages (madvise), and fresh ones are mapped in up
// front by all threads (MADV_POPULATE_WRITE) rather than page by page by the sweeps.

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__linux__) && !defined(MADV_POPULATE_WRITE)
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older kernels refuse it (EINVAL), harmlessly
#endif
#if defined(__SSE2__)
#include <immintrin.h>
#endif
#ifdef BPSN_OPENMP
#include <omp.h>
#endif

namespace {

// ask for transparent huge pages on the 2 MiB-aligned inside of a large output array that the
// kernel is about to write: its first-touch page faults are then 512 times fewer
void advise_huge(void* p, size_t bytes) {
#ifdef MADV_HUGEPAGE
  const uintptr_t huge = (uintptr_t)2 << 20;
  if (!p || bytes < 4 * huge) return;
  const uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
  const uintptr_t b = ((uintptr_t)p + bytes) & ~(huge - 1);
  if (b > a) madvise((void*)a, (size_t)(b - a), MADV_HUGEPAGE);
#endif
}

constexpr int MAX_THREADS = 64;
constexpr long long CHUNK_MIN = 1024;  // neurons: 4 KiB rows of float32
// steps per time block: the membrane is kept at one step per block (the checkpoints) and
// recomputed block by block where a sweep needs it
constexpr long long CHECKPOINT_STEPS = 32;

constexpr long long MAX_CHUNKS = 4 * MAX_THREADS;

// the rows a sweep writes (spikes, membrane, grad_x) are written once and not read again by
// it: non-temporal stores send them to memory without first reading every line into the
// cache, which a plain store does (measured: a pass that writes half of every row, as a
// sweep over one direction's neurons does, took 2.4x the time with plain stores; the
// backward pass at [8192, 8, 256] float32 1.15x).  Copies n values from the cache-resident
// src; the unaligned ends take plain stores
template <typename R>
inline void stream_row(R* __restrict dst, const R* __restrict src, long long n) {
  long long i = 0;
#if defined(__AVX512F__)
  constexpr int ALIGN = 64;
#elif defined(__AVX__)
  constexpr int ALIGN = 32;
#elif defined(__SSE2__)
  constexpr int ALIGN = 16;
#endif
#if defined(__SSE2__)
  constexpr long long V = ALIGN / (long long)sizeof(R);
  for (; i < n && ((uintptr_t)(dst + i) & (ALIGN - 1)); ++i) dst[i] = src[i];
  for (; i + V <= n; i += V) {  // a bit copy: float lanes carry doubles as well
    float* d = (float*)(dst + i);
    const float* c = (const float*)(src + i);
#if defined(__AVX512F__)
    _mm512_stream_ps(d, _mm512_loadu_ps(c));
#elif defined(__AVX__)
    _mm256_stream_ps(d, _mm256_loadu_ps(c));
#else
    _mm_stream_ps(d, _mm_loadu_ps(c));
#endif
  }
#endif
  for (; i < n; ++i) dst[i] = src[i];
}

// makes a thread's non-temporal stores visible before it reports its chunk done
inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

struct Shape {
  long long T, M, N, C, inner;
  long long B;           // neurons per block: C * inner
  long long F;           // forward neurons at the start of a block: ceil(C/2) * inner
  long long per_sample;  // M / N
};

// a segment: a run of neurons of one direction inside one block (and one sample), at most
// STRIP long
struct Segment {
  long long j;       // first neuron
  long long n;       // length
  long long k;       // offset inside the block (index into the per-block parameter arrays)
  long long local;   // offset inside the thread's range (index into its state arrays)
  long long sample;  // sample of these neurons (row of the mask)
  long long off;     // offset inside its strip (index into the strip's scratch rows)
  int backward;      // 1: a backward (anti-causal) neuron
};

// a strip: consecutive segments of one direction, segs[s0, s1), at most STRIP neurons.  A
// sweep runs one time block over one strip at a time: the strip's CHECKPOINT_STEPS rows of
// membranes (its scratch) and its per-neuron state stay in the cache while the block's steps
// run over it, instead of a whole tile's state passing through the cache at every step
struct Strip {
  long long s0, s1;
};

constexpr long long STRIP = 2048;

// steps ahead of the current one whose rows of the gradients the adjoint prefetches
constexpr long long AHEAD = 8;

// the segments of [j0, j1) (the forward neurons' first, then the backward neurons'; every
// maximal run of one direction inside one block cut at STRIP neurons) and their strips
// (forward strips first: nfwd of them).  One allocation: segments, then strips
Segment* make_segments(const Shape& sh, long long j0, long long j1, long long* count,
                       Strip** strips, long long* nstrip, long long* nfwd) {
  const long long blocks = (j1 - 1) / sh.B - j0 / sh.B + 1;
  const size_t cap = (size_t)((j1 - j0) / STRIP + 2 * blocks + 2);
  Segment* segs = (Segment*)malloc((sizeof(Segment) + sizeof(Strip)) * cap);
  if (!segs) return nullptr;
  Strip* sp = (Strip*)(segs + cap);
  long long c = 0, ns = 0, width = STRIP;  // width: neurons in the open strip
  for (int d = 0; d < 2; ++d) {
    if (d == 1) *nfwd = ns, width = STRIP;
    for (long long o = j0 / sh.B; o * sh.B < j1; ++o) {
      const long long base = o * sh.B;
      const long long bounds[3] = {base, base + sh.F, base + sh.B};
      const long long a = bounds[d] > j0 ? bounds[d] : j0;
      const long long b = bounds[d + 1] < j1 ? bounds[d + 1] : j1;
      for (long long p = a; p < b; p += STRIP) {
        const long long e = p + STRIP < b ? p + STRIP : b;
        if (width + (e - p) > STRIP) sp[ns++] = Strip{c, c}, width = 0;
        segs[c++] = Segment{p, e - p, p - base, p - j0, p / sh.per_sample, width, d};
        width += e - p, sp[ns - 1].s1 = c;
      }
    }
  }
  *count = c, *strips = sp, *nstrip = ns;
  return segs;
}

// surrogate derivatives, operation for operation as bpsn_ext/surrogate.py
template <typename R, int KIND>
inline R sg_grad(R x, R a, R b) {
  if (KIND == 0) {  // ATan: a = alpha/2, b = pi * alpha/2 (both rounded from double)
    R ax = b * x;
    return a / ((R)1 + ax * ax);
  } else if (KIND == 1) {  // Sigmoid
    R s = (R)1 / ((R)1 + exp(-(x * a)));
    return ((R)1 - s) * s * a;
  } else if (KIND == 2) {  // S2NN
    if (x < (R)0) {
      R s = (R)1 / ((R)1 + exp(-(a * x)));
      return a * s * ((R)1 - s);
    }
    return b / (x + (R)1);
  } else {  // FastSigmoid: 1 / (k |x| + 1)^2
    R d = a * fabs(x) + (R)1;
    return (R)1 / (d * d);
  }
}

// the refractory rule for one neuron and step (integer arithmetic, no branches: loops over it
// stay vectorisable): updates the steps-since-spike counter q (0 where a spike is kept, +1
// inside a run of raw spikes, -1 without a raw spike), returns keep | 2 * raw
template <typename R>
inline int raw_spike(R d, int ge) {  // d = H - thr; fire_ge: H >= thr, else H > thr
  return (ge & (d >= (R)0)) | ((ge ^ 1) & (d > (R)0));
}

template <typename R>
inline int refractory_step(R d, int32_t* q, int ge, int r) {
  const int raw = raw_spike(d, ge);
  const int32_t since = *q;
  const int keep = raw & ((since < 0) | (since >= r));
  *q = ((since + 1) & (keep - 1)) | (raw - 1);
  return keep | (raw << 1);
}

// the surrogate gradient passes where a spike was kept or none was raised: a suppressed spike
// passes no gradient
inline int gate_of(int step) { return (step & 1) | ((step >> 1) ^ 1); }

// a thread's chunk is run in tiles of at most this many neurons (the width of its state arrays)
constexpr long long TILE = 4096;

// one tile of a thread's chunk: its segments and strips, and a strip's scratch rows
template <typename R>
struct Tile {
  const Segment* segs;
  const Strip* strips;   // forward strips: [0, nfwd), backward strips: [nfwd, nstrip)
  long long nstrip, nfwd;
  long long j0, width;   // first neuron, neurons
  R* hs;                 // [CHECKPOINT_STEPS, STRIP]: one strip's membranes of a time block
};

// the time block b: steps [t0, t1)
struct Block {
  long long b, t0, t1;
};

inline Block block_of(long long b, long long T) {
  const long long t0 = b * CHECKPOINT_STEPS;
  return Block{b, t0, t0 + CHECKPOINT_STEPS < T ? t0 + CHECKPOINT_STEPS : T};
}

// what a sweep takes after the current strip: the next strip (index) in the same block, else
// the first one of the next block in the sweep's order; strip -1: nothing
struct Next {
  long long strip;
  Block blk;
};

// the next of strip s of block blk for a sweep over strips [first, last), blocks in `order`
inline Next next_strip(long long first, long long last, long long s, const Block& blk,
                       int order, long long T) {
  if (s + 1 < last) return Next{s + 1, blk};
  const long long b = blk.b + order, nb = (T + CHECKPOINT_STEPS - 1) / CHECKPOINT_STEPS;
  if (b < 0 || b >= nb || first >= last) return Next{-1, blk};
  return Next{first, block_of(b, T)};
}

// prefetches row t of strip sp of up to two arrays [T, M] (null ones skipped) into the cache
// level LEVEL (__builtin_prefetch's locality: 3 the L1 cache, 2 the L2 cache).  A strip's rows
// are short and the next row lies M elements further: the hardware prefetcher, which follows
// one page at a time, loses them
template <int LEVEL, typename R>
inline void prefetch_rows(const Shape& sh, const Tile<R>& tl, const Strip& sp, long long t,
                          const R* a0, const R* a1) {
  const R* arrays[2] = {a0, a1};
  for (const R* p : arrays) {
    if (!p) continue;
    for (long long s = sp.s0; s < sp.s1; ++s) {
      const char* c = (const char*)(p + t * sh.M + tl.segs[s].j);
      const long long bytes = tl.segs[s].n * (long long)sizeof(R);
      for (long long o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, LEVEL);
    }
  }
}

// the rows of x that the next strip will read, one step's rows per step of the current strip,
// so that they are in the L2 cache when it starts
template <typename R>
inline void prefetch_next(const Shape& sh, const Tile<R>& tl, const Next& nx, long long step,
                          const R* a0) {
  if (nx.strip < 0 || step >= nx.blk.t1 - nx.blk.t0) return;
  prefetch_rows<2>(sh, tl, tl.strips[nx.strip], nx.blk.t0 + step, a0, (const R*)nullptr);
}

// the membranes H of block blk for strip sp of direction DIR (0 forward, 1 backward) into the
// scratch rows hs[(t - t0) * STRIP + off], ascending (DIR 0) or descending (DIR 1) from the
// rows `from` + j (the state entering the block in the neuron's direction: a checkpoint row
// of [M]).  The same operations in the same order as the first computation, so the values are
// bitwise the same wherever they are recomputed.  Prefetches the next strip's rows of x
template <typename R, int DIR>
void block_h(const Shape& sh, const R* x, const uint8_t* mask, const R* lamk, const Tile<R>& tl,
             const Strip& sp, const R* from, const Block& blk, const Next& nx) {
  const long long M = sh.M, L = blk.t1 - blk.t0;
  for (long long step = 0; step < L; ++step) {
    const long long t = DIR ? blk.t1 - 1 - step : blk.t0 + step;
    prefetch_next(sh, tl, nx, step, x);
    for (long long s = sp.s0; s < sp.s1; ++s) {
      const Segment g = tl.segs[s];
      const R* __restrict lam = lamk + g.k;
      const R* __restrict xr = x + t * M + g.j;
      const R* __restrict prev =
          step == 0 ? from + g.j : tl.hs + (t - blk.t0 + (DIR ? 1 : -1)) * STRIP + g.off;
      R* __restrict hr = tl.hs + (t - blk.t0) * STRIP + g.off;
      if (!mask || mask[t * sh.N + g.sample]) {
        for (long long i = 0; i < g.n; ++i) hr[i] = lam[i] * prev[i] + xr[i];
      } else {
        for (long long i = 0; i < g.n; ++i) hr[i] = lam[i] * prev[i];
      }
    }
  }
}

// the backward neurons' membranes of strip sp carried descending over block blk in place in
// h (tile-wide; the same operations as block_h, without the scratch rows)
template <typename R>
void carry_h(const Shape& sh, const R* x, const uint8_t* mask, const R* lamk, const Tile<R>& tl,
             const Strip& sp, R* h, const Block& blk, const Next& nx) {
  for (long long t = blk.t1 - 1; t >= blk.t0; --t) {
    prefetch_next(sh, tl, nx, blk.t1 - 1 - t, x);
    for (long long s = sp.s0; s < sp.s1; ++s) {
      const Segment g = tl.segs[s];
      const R* __restrict lam = lamk + g.k;
      const R* __restrict xr = x + t * sh.M + g.j;
      R* __restrict hg = h + g.local;
      if (!mask || mask[t * sh.N + g.sample]) {
        for (long long i = 0; i < g.n; ++i) hg[i] = lam[i] * hg[i] + xr[i];
      } else {
        for (long long i = 0; i < g.n; ++i) hg[i] = lam[i] * hg[i];
      }
    }
  }
}

// copies the strip's neurons between a row of [M] (at j) and a tile-wide array (at local)
template <typename R, typename T>
void strip_copy(const Tile<R>& tl, const Strip& sp, T* row, T* local, bool to_row) {
  for (long long s = sp.s0; s < sp.s1; ++s) {
    const Segment& g = tl.segs[s];
    if (to_row) {
      memcpy(row + g.j, local + g.local, sizeof(T) * (size_t)g.n);
    } else {
      memcpy(local + g.local, row + g.j, sizeof(T) * (size_t)g.n);
    }
  }
}

template <typename R>
struct FwdArgs {
  const R* x;
  const uint8_t* mask;
  const R* lamk;  // [B]: the decay of every neuron of a block (lam_f or lam_b by direction)
  const R* thrk;  // [B]
  R* spikes;
  R* ckpt;           // [nb, M]: the membrane entering every time block (see the header)
  int32_t* since;    // [nb, M]: the refractory counter entering every block (refractory only)
  R* mem;            // optional: the membrane output (0 at padded steps)
  Shape sh;
  int fire_ge, refractory;
  long long j0, j1;
  int status;
};

// the spikes (and membrane output) of segment g at step t from its scratch row hr of H; `o`
// is a row where the spikes are put together before they are streamed out
template <typename R, bool REF>
void spike_row(const FwdArgs<R>* a, const Segment& g, long long t, const R* __restrict hr,
               int32_t* __restrict sn, R* __restrict o) {
  const Shape& sh = a->sh;
  const long long n = g.n;
  const bool valid = !a->mask || a->mask[t * sh.N + g.sample];
  const R* __restrict th = a->thrk + g.k;
  if (!valid) {
    for (long long i = 0; i < n; ++i) o[i] = (R)0;
    if (REF)
      for (long long i = 0; i < n; ++i) sn[i] = -1;
  } else {
    const int ge = a->fire_ge, r = a->refractory;
    for (long long i = 0; i < n; ++i) {
      const R d = hr[i] - th[i];
      const int keep = REF ? refractory_step(d, sn + i, ge, r) & 1 : raw_spike(d, ge);
      o[i] = (R)keep;
    }
  }
  stream_row(a->spikes + t * sh.M + g.j, o, n);
  if (a->mem) stream_row(a->mem + t * sh.M + g.j, valid ? hr : o, n);  // o: 0 when padded
}

// the forward pass of one tile.  Sweep R (blocks last to first): the backward neurons'
// membranes carried strip by strip, keeping only the checkpoints.  Sweep F (blocks first to
// last), strip by strip: the block's membranes into the scratch (forward neurons from their
// carried state, backward ones recomputed from their checkpoint), then the strip's spikes,
// step by step.  h: the carried membranes, since: the refractory counters (tile-wide)
template <typename R, bool REF>
void forward_tile(const FwdArgs<R>* a, const Tile<R>& tl, R* h, int32_t* since, R* out) {
  const Shape sh = a->sh;
  const long long nb = (sh.T + CHECKPOINT_STEPS - 1) / CHECKPOINT_STEPS;
  memset(h, 0, sizeof(R) * (size_t)tl.width);
  for (long long b = nb - 1; b >= 0; --b) {
    const Block blk = block_of(b, sh.T);
    for (long long s = tl.nfwd; s < tl.nstrip; ++s) {
      strip_copy(tl, tl.strips[s], a->ckpt + b * sh.M, h, true);
      if (b > 0)
        carry_h(sh, a->x, a->mask, a->lamk, tl, tl.strips[s], h, blk,
                next_strip(tl.nfwd, tl.nstrip, s, blk, -1, sh.T));
    }
  }
  memset(h, 0, sizeof(R) * (size_t)tl.width);
  for (long long i = 0; i < tl.width; ++i) since[i] = -1;
  for (long long b = 0; b < nb; ++b) {
    const Block blk = block_of(b, sh.T);
    for (long long s = 0; s < tl.nstrip; ++s) {
      const Strip sp = tl.strips[s];
      R* ck = a->ckpt + b * sh.M;
      if (REF) strip_copy(tl, sp, a->since + b * sh.M, since, true);
      const Next nx = next_strip(0, tl.nstrip, s, blk, 1, sh.T);
      if (tl.segs[sp.s0].backward) {
        block_h<R, 1>(sh, a->x, a->mask, a->lamk, tl, sp, ck, blk, nx);
      } else {
        strip_copy(tl, sp, ck, h, true);
        block_h<R, 0>(sh, a->x, a->mask, a->lamk, tl, sp, ck, blk, nx);
        for (long long q = sp.s0; q < sp.s1; ++q)
          memcpy(h + tl.segs[q].local, tl.hs + (blk.t1 - 1 - blk.t0) * STRIP + tl.segs[q].off,
                 sizeof(R) * (size_t)tl.segs[q].n);
      }
      for (long long t = blk.t0; t < blk.t1; ++t)
        for (long long q = sp.s0; q < sp.s1; ++q) {
          const Segment& g = tl.segs[q];
          spike_row<R, REF>(a, g, t, tl.hs + (t - blk.t0) * STRIP + g.off, since + g.local, out);
        }
    }
  }
}

// a thread's chunk [j0, j1), tile by tile: f(tile), each tile with its segments and strips and
// the shared scratch rows; returns 1 when out of memory, else the last status f returned
template <typename A, typename R, typename F>
int for_tiles(const A* a, F f) {
  R* hs = (R*)malloc(sizeof(R) * (size_t)(CHECKPOINT_STEPS * STRIP));
  if (!hs) return 1;
  int status = 0;
  for (long long j = a->j0; j < a->j1 && !status; j += TILE) {
    const long long j1 = j + TILE < a->j1 ? j + TILE : a->j1;
    long long nseg = 0, nstrip = 0, nfwd = 0;
    Strip* strips = nullptr;
    Segment* segs = make_segments(a->sh, j, j1, &nseg, &strips, &nstrip, &nfwd);
    if (!segs) {
      status = 1;
      break;
    }
    status = f(Tile<R>{segs, strips, nstrip, nfwd, j, j1 - j, hs});
    free(segs);
  }
  free(hs);
  return status;
}

template <typename R, bool REF>
void forward_range(FwdArgs<R>* a) {
  const size_t w = (size_t)(a->j1 - a->j0 < TILE ? a->j1 - a->j0 : TILE);
  R* h = (R*)malloc(sizeof(R) * w);
  int32_t* since = (int32_t*)malloc(sizeof(int32_t) * w);
  R* out = (R*)malloc(sizeof(R) * STRIP);
  a->status = h && since && out ? for_tiles<FwdArgs<R>, R>(a, [&](const Tile<R>& tl) {
    forward_tile<R, REF>(a, tl, h, since, out);
    return 0;
  })
                                : 1;
  stream_fence();
  free(h), free(since), free(out);
}

template <typename R>
struct BwdArgs {
  const R* g;    // dL/dspikes [T, M], or one value (g_const), or null (no gradient)
  int g_const;
  const R* gm;   // dL/dmembrane [T, M] or null
  const uint8_t* mask;
  const R* lamk;
  const R* thrk;
  const R* x;
  const R* ckpt;         // [nb, M], as the forward pass wrote it
  const int32_t* since;  // [nb, M], as the forward pass wrote it (refractory only)
  R* grad_x;
  double* acc_lam;  // [M] per-neuron dL/dlam
  double* acc_thr;  // [M] per-neuron dL/dthr
  Shape sh;
  int fire_ge, refractory;
  R sg_a, sg_b;
  long long j0, j1;
  int status;
};

// a tile's running state in the backward pass (arrays of its width) and a strip's scratch
template <typename R>
struct BwdState {
  R* adj;           // the adjoint
  double* s_lam;    // per-neuron dL/dlam
  double* s_thr;    // per-neuron dL/dthr
  int32_t* since;   // the refractory counter
  const R* gconst;  // [STRIP]: dL/dspikes where it is one value (or 0 where absent)
  const R* zeros;   // [STRIP]: dL/dmembrane where it is absent
  uint8_t* gates;   // [CHECKPOINT_STEPS, STRIP]: a forward strip's gates of a block
  R* b_lam;         // [STRIP]: a strip's dL/dlam over the current block (added to s_lam after)
  R* b_thr;         // [STRIP]: the same for dL/dthr
};

// one row of the adjoint recurrence for one segment: delta, the threshold and decay sums and
// the adjoint (= dL/dx before masking, streamed out by the caller), which runs the other way
// in time than the membrane.
// GATE: 0 no refractory rule; 1 re-run the rule from H (state sn, the sweep runs forward in
// time); 2 read the gate bytes gt that a forward run over the block recorded
template <typename R, int KIND, int GATE>
inline void adjoint_row(long long n, const R* __restrict hr, const R* __restrict th,
                        const R* __restrict lam, const R* __restrict gr,
                        const R* __restrict gmr, int32_t* __restrict sn,
                        const uint8_t* __restrict gt, R* __restrict adj, R* __restrict sl,
                        R* __restrict st, int ge, int r, R sa, R sb) {
  for (long long i = 0; i < n; ++i) {
    const R v = hr[i];
    const R d = v - th[i];
    R gate = (R)1;
    if (GATE == 1) gate = (R)gate_of(refractory_step(d, sn + i, ge, r));
    if (GATE == 2) gate = (R)gt[i];
    const R gs = gr[i] * sg_grad<R, KIND>(d, sa, sb) * gate;
    st[i] -= gs;
    const R delta = gs + gmr[i];
    sl[i] += adj[i] * v;
    adj[i] = delta + lam[i] * adj[i];
  }
}

// step t of the adjoint of segment g, from its scratch row hr of H (and gate row gt)
template <typename R, int KIND, int GATE>
inline void adjoint_step(const BwdArgs<R>* a, const BwdState<R>& st, const Segment& g,
                         long long t, const R* __restrict hr, const uint8_t* gt) {
  const Shape& sh = a->sh;
  const long long at = t * sh.M + g.j, n = g.n;
  R* __restrict ab = st.adj + g.local;
  R* __restrict sl = st.b_lam + g.off;
  const R* __restrict lam = a->lamk + g.k;
  if (a->mask && !a->mask[t * sh.N + g.sample]) {
    if (GATE == 1)
      for (long long i = 0; i < n; ++i) st.since[g.local + i] = -1;
    for (long long i = 0; i < n; ++i) {
      sl[i] += ab[i] * hr[i];
      ab[i] = lam[i] * ab[i];
    }
    stream_row(a->grad_x + at, st.zeros, n);
    return;
  }
  // a constant or absent dL/dspikes and an absent dL/dmembrane read per-strip buffers, so
  // that one branch-free (vectorised) loop serves every case
  const R* gr = a->g && !a->g_const ? a->g + at : st.gconst;
  const R* gmr = a->gm ? a->gm + at : st.zeros;
  adjoint_row<R, KIND, GATE>(n, hr, a->thrk + g.k, lam, gr, gmr, st.since + g.local, gt, ab, sl,
                             st.b_thr + g.off, a->fire_ge, a->refractory, a->sg_a, a->sg_b);
  stream_row(a->grad_x + at, ab, n);
}

// the adjoint of strip sp over block blk, its steps ascending (DIR 0) or descending (DIR 1);
// the block's sums of the decay and threshold gradients (float for float32, see the header)
// are then added to the per-neuron double sums.  Prefetches the rows of the gradients
// AHEAD steps ahead into the L1 cache (measured at [8192, 8, 256] float32, one thread: the
// backward pass in 0.7x the time it took with the next strip's rows prefetched into the L2
// cache instead)
template <typename R, int KIND, int GATE, int DIR>
void strip_adjoint(const BwdArgs<R>* a, const Tile<R>& tl, const BwdState<R>& st,
                   const Strip& sp, const Block& blk) {
  const R* g = a->g && !a->g_const ? a->g : nullptr;
  const long long L = blk.t1 - blk.t0;
  for (long long step = 0; step < L; ++step) {
    const long long t = DIR ? blk.t1 - 1 - step : blk.t0 + step;
    if (step + AHEAD < L) {
      const long long ta = DIR ? t - AHEAD : t + AHEAD;
      for (long long s = sp.s0; s < sp.s1; ++s) {
        const R* rows[2] = {g, a->gm};
        for (const R* p : rows) {
          if (!p) continue;
          const char* c = (const char*)(p + ta * a->sh.M + tl.segs[s].j);
          for (long long o = 0; o < tl.segs[s].n * (long long)sizeof(R); o += 64)
            __builtin_prefetch(c + o, 0, 3);
        }
      }
    }
    for (long long s = sp.s0; s < sp.s1; ++s) {
      const Segment& sg = tl.segs[s];
      const long long row = (t - blk.t0) * STRIP + sg.off;
      adjoint_step<R, KIND, GATE>(a, st, sg, t, tl.hs + row, GATE == 2 ? st.gates + row : nullptr);
    }
  }
  for (long long s = sp.s0; s < sp.s1; ++s) {
    const Segment& sg = tl.segs[s];
    for (long long i = 0; i < sg.n; ++i) {
      st.s_lam[sg.local + i] += (double)st.b_lam[sg.off + i];
      st.s_thr[sg.local + i] += (double)st.b_thr[sg.off + i];
      st.b_lam[sg.off + i] = (R)0, st.b_thr[sg.off + i] = (R)0;
    }
  }
}

// sweep A, first block to last: the backward neurons (their adjoint runs forward in time),
// strip by strip, their membranes recomputed per block from the checkpoints
template <typename R, int KIND, bool REF>
void sweep_a(const BwdArgs<R>* a, const Tile<R>& tl, const BwdState<R>& st) {
  const Shape& sh = a->sh;
  const long long nb = (sh.T + CHECKPOINT_STEPS - 1) / CHECKPOINT_STEPS;
  for (long long b = 0; b < nb; ++b) {
    const Block blk = block_of(b, sh.T);
    for (long long s = tl.nfwd; s < tl.nstrip; ++s) {
      const Next nx = next_strip(tl.nfwd, tl.nstrip, s, blk, 1, sh.T);
      block_h<R, 1>(sh, a->x, a->mask, a->lamk, tl, tl.strips[s], a->ckpt + b * sh.M, blk, nx);
      strip_adjoint<R, KIND, REF ? 1 : 0, 0>(a, tl, st, tl.strips[s], blk);
    }
  }
}

// the refractory gates of forward strip sp over block blk, re-run forward in time from the
// counter the forward pass kept at the block's start
template <typename R>
void strip_gates(const BwdArgs<R>* a, const Tile<R>& tl, const BwdState<R>& st, const Strip& sp,
                 const Block& blk) {
  const Shape& sh = a->sh;
  const int ge = a->fire_ge, r = a->refractory;
  strip_copy(tl, sp, (int32_t*)a->since + blk.b * sh.M, st.since, false);
  for (long long t = blk.t0; t < blk.t1; ++t) {
    for (long long s = sp.s0; s < sp.s1; ++s) {
      const Segment g = tl.segs[s];  // a copy: the byte stores below may alias anything
      const long long n = g.n, row = (t - blk.t0) * STRIP + g.off;
      int32_t* __restrict sn = st.since + g.local;
      if (!a->mask || a->mask[t * sh.N + g.sample]) {
        const R* __restrict hr = tl.hs + row;
        const R* __restrict th = a->thrk + g.k;
        uint8_t* __restrict gt = st.gates + row;
        for (long long i = 0; i < n; ++i)
          gt[i] = (uint8_t)gate_of(refractory_step(hr[i] - th[i], sn + i, ge, r));
      } else {
        for (long long i = 0; i < n; ++i) sn[i] = -1;
      }
    }
  }
}

// sweep B, last block to first: the forward neurons, strip by strip, their membranes (and
// refractory gates) recomputed forward in time over each block, then the adjoint backward
template <typename R, int KIND, bool REF>
void sweep_b(const BwdArgs<R>* a, const Tile<R>& tl, const BwdState<R>& st) {
  const Shape& sh = a->sh;
  const long long nb = (sh.T + CHECKPOINT_STEPS - 1) / CHECKPOINT_STEPS;
  for (long long b = nb - 1; b >= 0; --b) {
    const Block blk = block_of(b, sh.T);
    for (long long s = 0; s < tl.nfwd; ++s) {
      const Next nx = next_strip(0, tl.nfwd, s, blk, -1, sh.T);
      block_h<R, 0>(sh, a->x, a->mask, a->lamk, tl, tl.strips[s], a->ckpt + b * sh.M, blk, nx);
      if (REF) strip_gates(a, tl, st, tl.strips[s], blk);
      strip_adjoint<R, KIND, REF ? 2 : 0, 1>(a, tl, st, tl.strips[s], blk);
    }
  }
}

template <typename R, int KIND, bool REF>
void backward_range(BwdArgs<R>* a) {
  const long long len = a->j1 - a->j0, w = len < TILE ? len : TILE;
  R* adj = (R*)malloc(sizeof(R) * (size_t)w);
  double* s_lam = (double*)malloc(sizeof(double) * (size_t)w);
  double* s_thr = (double*)malloc(sizeof(double) * (size_t)w);
  int32_t* since = (int32_t*)malloc(sizeof(int32_t) * (size_t)w);
  R* consts = (R*)calloc((size_t)(4 * STRIP), sizeof(R));  // gconst, zeros, b_lam, b_thr
  uint8_t* gates = REF ? (uint8_t*)malloc((size_t)(CHECKPOINT_STEPS * STRIP)) : nullptr;
  if (!adj || !s_lam || !s_thr || !since || !consts || (REF && !gates)) {
    a->status = 1;
  } else {
    const R g0 = (a->g && a->g_const) ? a->g[0] : (R)0;
    for (long long i = 0; i < STRIP; ++i) consts[i] = g0;
    const BwdState<R> st{adj,    s_lam, s_thr, since, consts, consts + STRIP, gates,
                         consts + 2 * STRIP, consts + 3 * STRIP};
    a->status = for_tiles<BwdArgs<R>, R>(a, [&](const Tile<R>& tl) {
      const size_t n = (size_t)tl.width;
      memset(adj, 0, sizeof(R) * n), memset(s_lam, 0, sizeof(double) * n);
      memset(s_thr, 0, sizeof(double) * n);
      for (size_t i = 0; i < n; ++i) since[i] = -1;
      sweep_a<R, KIND, REF>(a, tl, st);
      memset(adj, 0, sizeof(R) * n);
      sweep_b<R, KIND, REF>(a, tl, st);
      memcpy(a->acc_lam + tl.j0, s_lam, sizeof(double) * n);
      memcpy(a->acc_thr + tl.j0, s_thr, sizeof(double) * n);
      return 0;
    });
  }
  stream_fence();
  free(adj), free(s_lam), free(s_thr), free(since), free(consts), free(gates);
}
// set in a forked child (bpsn_cpu_disable_openmp): run_parallel then starts its own threads
int g_no_openmp = 0;

template <typename A>
struct Queue {
  A* chunks;        // one argument set per chunk of neurons
  long long count;  // number of chunks
  long long next;   // the next chunk to take (atomic)
  long long done;   // chunks finished (atomic)
  int refs;         // the caller plus the helper threads still holding the queue (atomic)
};

template <typename A>
void release(Queue<A>* q) {
  if (__atomic_sub_fetch(&q->refs, 1, __ATOMIC_ACQ_REL) == 0) free(q);
}

// take chunks until none is left; a thread that the OS starts late finds none and leaves
template <typename A, void (*F)(A*)>
void take_chunks(Queue<A>* q) {
  for (;;) {
    long long c = __atomic_fetch_add(&q->next, 1, __ATOMIC_RELAXED);
    if (c >= q->count) break;
    F(&q->chunks[c]);
    __atomic_fetch_add(&q->done, 1, __ATOMIC_RELEASE);
  }
}

template <typename A, void (*F)(A*)>
void* worker(void* p) {
  take_chunks<A, F>((Queue<A>*)p);
  release((Queue<A>*)p);
  return nullptr;
}

// the first failure status of the chunks (0: none)
template <typename A>
int first_status(const A* chunks, long long count) {
  for (long long c = 0; c < count; ++c)
    if (chunks[c].status) return chunks[c].status;
  return 0;
}

// run F on every chunk with up to `threads` threads, the caller being one of them.  Helper
// threads are detached and the caller waits for the chunks, not for the threads: on a busy
// machine a helper that is not scheduled in time costs nothing (the caller does its share).
// The queue lives on the heap until its last user leaves.  Returns the first failure status.
template <typename A, void (*F)(A*)>
int run_parallel(A* chunks, long long count, int threads) {
#ifdef BPSN_OPENMP
  // built against torch's own OpenMP runtime: its thread team (already started, waiting for
  // work after torch's last operator) takes the chunks, instead of threads started per call.
  // Not in a forked child: GNU OpenMP's team does not survive fork (torch's operators hang
  // there too), so a child starts its own threads
  if (threads > 1 && count > 1 && !__atomic_load_n(&g_no_openmp, __ATOMIC_RELAXED) &&
      !omp_in_parallel()) {
    Queue<A> q{chunks, count, 0, 0, 1};
#pragma omp parallel num_threads(threads < count ? threads : (int)count)
    take_chunks<A, F>(&q);
    return first_status(chunks, count);
  }
#endif
  Queue<A>* q = (Queue<A>*)malloc(sizeof(Queue<A>));
  if (!q) {
    for (long long c = 0; c < count; ++c) F(&chunks[c]);
  } else {
    q->chunks = chunks, q->count = count, q->next = 0, q->done = 0, q->refs = 1;
    pthread_attr_t attr;
    bool attr_ok = pthread_attr_init(&attr) == 0 &&
                   pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0;
    for (int i = 1; attr_ok && i < threads && i < count; ++i) {
      __atomic_add_fetch(&q->refs, 1, __ATOMIC_ACQ_REL);
      pthread_t id;
      if (pthread_create(&id, &attr, worker<A, F>, q) != 0) {
        __atomic_sub_fetch(&q->refs, 1, __ATOMIC_ACQ_REL);
        break;
      }
    }
    if (attr_ok) pthread_attr_destroy(&attr);
    take_chunks<A, F>(q);
    while (__atomic_load_n(&q->done, __ATOMIC_ACQUIRE) < count) sched_yield();
    release(q);
  }
  return first_status(chunks, count);
}

// chunks of neurons: one per thread would let a descheduled thread hold everyone up on a busy
// machine, so with several threads there are up to 4 per thread; but a chunk's rows are what
// the time loop streams, and rows shorter than a few KiB stream badly (measured: 256-neuron
// chunks took 1.5x the time of 1024-neuron ones at [8192, 8, 256]), so a chunk is at least
// CHUNK_MIN neurons wide unless that would leave a thread without one (a multiple of 16: whole
// cache lines); one thread takes all neurons at once
long long split_chunks(long long M, long long T, int* threads, long long* lo, long long* hi) {
  int n = *threads < 1 ? 1 : (*threads > MAX_THREADS ? MAX_THREADS : *threads);
  if (M * T < (1 << 15)) n = 1;  // thread start-up would cost more than it saves
  long long chunk = M;
  if (n > 1) {
    const long long per_thread = (M + n - 1) / n;
    const long long least = per_thread < CHUNK_MIN ? per_thread : CHUNK_MIN;
    chunk = (M + 4 * n - 1) / (4 * n);
    if (chunk < least) chunk = least;
    chunk = (chunk + 15) / 16 * 16;
  }
  long long used = 0;
  for (long long a = 0; a < M && used < MAX_CHUNKS; a += chunk) {
    lo[used] = a, hi[used] = a + chunk < M ? a + chunk : M, ++used;
  }
  if (hi[used - 1] < M) hi[used - 1] = M;
  *threads = n;
  return used;
}

// whether the middle page of an array is mapped already (reused memory), not fresh memory
// that its first store would fault in (the first page can hold the allocator's header)
inline bool mapped(const void* p, size_t bytes) {
#if defined(__linux__)
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  unsigned char in = 0;
  const uintptr_t mid = ((uintptr_t)p + bytes / 2) & ~(page - 1);
  if (mincore((void*)mid, 1, &in) != 0) return true;
  return in & 1;
#else
  (void)p, (void)bytes;
  return true;  // nothing to populate up front elsewhere
#endif
}

// a part of a fresh output array to map in up front
struct Populate {
  char* p;
  size_t bytes;
  int status;
};

void populate_range(Populate* a) {
#if defined(MADV_POPULATE_WRITE)
  madvise(a->p, a->bytes, MADV_POPULATE_WRITE);  // harmless where it fails: stores fault it in
#endif
  a->status = 0;
}

// the large output arrays get transparent huge pages (their first touch then costs 512 times
// fewer page faults), and fresh ones are mapped in up front (MADV_POPULATE_WRITE, Linux 5.14
// and later), split over the threads at huge-page bounds, rather than page by page as the
// sweeps reach them (measured: the forward pass at [8192, 8, 256] float32 into a fresh array,
// one thread, 33 -> 26 ms)
void prepare_outputs(void* const* arrays, int count, size_t bytes, int threads) {
  const uintptr_t huge = (uintptr_t)2 << 20;
  Populate parts[MAX_CHUNKS];
  long long n = 0;
  for (int k = 0; k < count; ++k) {
    if (!arrays[k]) continue;
    advise_huge(arrays[k], bytes);
    if (bytes < 4 * huge || mapped(arrays[k], bytes)) continue;  // small, or reused memory
    const uintptr_t a = (uintptr_t)arrays[k] & ~(uintptr_t)4095;
    const uintptr_t e = (uintptr_t)arrays[k] + bytes;
    const uintptr_t per = ((e - a) / (uintptr_t)threads + huge - 1) & ~(huge - 1);
    for (uintptr_t s = a; s < e && n < MAX_CHUNKS;) {
      uintptr_t next = (s + per) & ~(huge - 1);
      if (next <= s || next > e || n == MAX_CHUNKS - 1) next = e;
      parts[n++] = Populate{(char*)s, (size_t)(next - s), 0};
      s = next;
    }
  }
  if (n) run_parallel<Populate, populate_range>(parts, n, threads);
}

Shape make_shape(long long T, long long M, long long N, long long C, long long inner) {
  Shape sh;
  sh.T = T, sh.M = M, sh.N = N, sh.C = C, sh.inner = inner;
  sh.B = C * inner;
  sh.F = (C + 1) / 2 * inner;
  sh.per_sample = M / N;
  return sh;
}

// per-block parameter arrays: lam_f / lam_b by direction, thr, for every neuron of a block
template <typename R>
bool block_params(const Shape& sh, const R* lam_f, const R* lam_b, const R* thr, R** lamk,
                  R** thrk) {
  *lamk = (R*)malloc(sizeof(R) * (size_t)sh.B);
  *thrk = (R*)malloc(sizeof(R) * (size_t)sh.B);
  if (!*lamk || !*thrk) return false;
  for (long long k = 0; k < sh.B; ++k) {
    long long c = k / sh.inner;
    (*lamk)[k] = k < sh.F ? lam_f[c] : lam_b[c];
    (*thrk)[k] = thr[c];
  }
  return true;
}

template <typename R>
int forward(const R* x, const uint8_t* mask, const R* lam_f, const R* lam_b, const R* thr,
            R* spikes, R* ckpt, int32_t* since, R* mem, long long T, long long M, long long N,
            long long C, long long inner, int fire_ge, int refractory, int threads) {
  if (T < 1 || M < 1 || N < 1 || C < 1 || inner < 1 || M % (C * inner) || M % N) return 2;
  if (!ckpt || (refractory > 0 && !since)) return 2;
  Shape sh = make_shape(T, M, N, C, inner);
  R *lamk = nullptr, *thrk = nullptr;
  if (!block_params(sh, lam_f, lam_b, thr, &lamk, &thrk)) {
    free(lamk), free(thrk);
    return 1;
  }
  long long lo[MAX_CHUNKS], hi[MAX_CHUNKS];
  long long n = split_chunks(M, T, &threads, lo, hi);
  void* outputs[2] = {spikes, mem};
  prepare_outputs(outputs, 2, sizeof(R) * (size_t)T * (size_t)M, threads);
  FwdArgs<R> args[MAX_CHUNKS];
  for (long long i = 0; i < n; ++i)
    args[i] = FwdArgs<R>{x,   mask, lamk,    thrk,       spikes, ckpt,  since,
                         mem, sh,   fire_ge, refractory, lo[i],  hi[i], 0};
  int status = refractory > 0 ? run_parallel<FwdArgs<R>, forward_range<R, true>>(args, n, threads)
                              : run_parallel<FwdArgs<R>, forward_range<R, false>>(args, n, threads);
  free(lamk), free(thrk);
  return status;
}

template <typename R, int KIND>
int backward_kind(BwdArgs<R>* args, long long n, int threads, bool ref) {
  return ref ? run_parallel<BwdArgs<R>, backward_range<R, KIND, true>>(args, n, threads)
             : run_parallel<BwdArgs<R>, backward_range<R, KIND, false>>(args, n, threads);
}

template <typename R>
int backward(const R* g, int g_const, const R* gm, const uint8_t* mask, const R* lam_f,
             const R* lam_b, const R* thr, const R* x, const R* ckpt, const int32_t* since,
             R* grad_x, R* g_lam_f, R* g_lam_b, R* g_thr, long long T, long long M, long long N,
             long long C, long long inner, int fire_ge, int refractory, int sg_kind, double sg_a,
             double sg_b, int threads) {
  if (T < 1 || M < 1 || N < 1 || C < 1 || inner < 1 || M % (C * inner) || M % N) return 2;
  if (!ckpt || (refractory > 0 && !since)) return 2;
  if (sg_kind < 0 || sg_kind > 3) return 3;
  Shape sh = make_shape(T, M, N, C, inner);
  R *lamk = nullptr, *thrk = nullptr;
  double* acc_lam = (double*)malloc(sizeof(double) * (size_t)M);
  double* acc_thr = (double*)malloc(sizeof(double) * (size_t)M);
  if (!acc_lam || !acc_thr || !block_params(sh, lam_f, lam_b, thr, &lamk, &thrk)) {
    free(lamk), free(thrk), free(acc_lam), free(acc_thr);
    return 1;
  }
  long long lo[MAX_CHUNKS], hi[MAX_CHUNKS];
  long long n = split_chunks(M, T, &threads, lo, hi);
  void* outputs[1] = {grad_x};
  prepare_outputs(outputs, 1, sizeof(R) * (size_t)T * (size_t)M, threads);
  BwdArgs<R> args[MAX_CHUNKS];
  for (long long i = 0; i < n; ++i)
    args[i] = BwdArgs<R>{g,       g_const, gm,      mask, lamk,       thrk,      x,
                         ckpt,    since,   grad_x,  acc_lam, acc_thr, sh, fire_ge, refractory,
                         (R)sg_a, (R)sg_b, lo[i],   hi[i],   0};
  if (sg_kind == 0) sg_b = 3.14159265358979323846 * (sg_a / 2.0), sg_a = sg_a / 2.0;
  for (long long i = 0; i < n; ++i) args[i].sg_a = (R)sg_a, args[i].sg_b = (R)sg_b;
  bool ref = refractory > 0;
  int status;
  switch (sg_kind) {
    case 0: status = backward_kind<R, 0>(args, n, threads, ref); break;
    case 1: status = backward_kind<R, 1>(args, n, threads, ref); break;
    case 2: status = backward_kind<R, 2>(args, n, threads, ref); break;
    default: status = backward_kind<R, 3>(args, n, threads, ref); break;
  }
  if (status == 0) {  // per-channel sums, in double, then rounded once
    double* sums = (double*)calloc((size_t)(3 * C), sizeof(double));
    if (!sums) {
      status = 1;
    } else {
      for (long long j = 0; j < M; ++j) {
        long long k = j % sh.B, c = k / inner;
        sums[(k < sh.F ? 0 : C) + c] += acc_lam[j];
        sums[2 * C + c] += acc_thr[j];
      }
      for (long long c = 0; c < C; ++c) {
        g_lam_f[c] = (R)sums[c];
        g_lam_b[c] = (R)sums[C + c];
        g_thr[c] = (R)sums[2 * C + c];
      }
      free(sums);
    }
  }
  free(lamk), free(thrk), free(acc_lam), free(acc_thr);
  return status;
}

}  // namespace

// ctypes entry points; return 0 on success, 1 out of memory, 2 bad shape or missing array,
// 3 bad surrogate
#define BPSN_FWD_ARGS(R)                                                                      \
  const R *x, const uint8_t *mask, const R *lam_f, const R *lam_b, const R *thr, R *spikes,   \
      R *ckpt, int32_t *since, R *mem, long long T, long long M, long long N, long long C,    \
      long long inner, int fire_ge, int refractory, int threads
#define BPSN_BWD_ARGS(R)                                                                     \
  const R *g, int g_const, const R *gm, const uint8_t *mask, const R *lam_f, const R *lam_b, \
      const R *thr, const R *x, const R *ckpt, const int32_t *since, R *grad_x, R *g_lam_f,  \
      R *g_lam_b, R *g_thr, long long T, long long M, long long N, long long C,              \
      long long inner, int fire_ge, int refractory, int sg_kind, double sg_a, double sg_b,   \
      int threads
#define BPSN_FWD_CALL \
  x, mask, lam_f, lam_b, thr, spikes, ckpt, since, mem, T, M, N, C, inner, fire_ge, refractory, threads
#define BPSN_BWD_CALL                                                                       \
  g, g_const, gm, mask, lam_f, lam_b, thr, x, ckpt, since, grad_x, g_lam_f, g_lam_b, g_thr, T, \
      M, N, C, inner, fire_ge, refractory, sg_kind, sg_a, sg_b, threads

extern "C" {

int bpsn_cpu_abi_version() { return 3; }

// from now on, start threads per call instead of using the OpenMP team (a forked child)
void bpsn_cpu_disable_openmp() { __atomic_store_n(&g_no_openmp, 1, __ATOMIC_RELAXED); }

// steps per checkpoint: the checkpoint arrays hold ceil(T / this) rows of M
int bpsn_cpu_checkpoint_steps() { return (int)CHECKPOINT_STEPS; }

int bpsn_cpu_forward_f32(BPSN_FWD_ARGS(float)) { return forward<float>(BPSN_FWD_CALL); }

int bpsn_cpu_forward_f64(BPSN_FWD_ARGS(double)) { return forward<double>(BPSN_FWD_CALL); }

int bpsn_cpu_backward_f32(BPSN_BWD_ARGS(float)) { return backward<float>(BPSN_BWD_CALL); }

int bpsn_cpu_backward_f64(BPSN_BWD_ARGS(double)) { return backward<double>(BPSN_BWD_CALL); }

}  // extern "C"

