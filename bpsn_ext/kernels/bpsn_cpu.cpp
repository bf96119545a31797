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
// at least 1024 neurons wide where there are enough) and run all T steps for a chunk, streaming
// one slice per row with the chunk's state (a few arrays of the chunk's width) in cache, and
// prefetching the rows a few steps ahead.  Results do not depend on the chunking.
//
// Forward: sweep R (t descending, backward neurons) writes their membranes; sweep F (t
// ascending) writes the forward neurons' membranes and everyone's spikes.
//
// Backward (delta_t = dL/dH_t = g_t * gate_t * m_t * sg'(H_t - thr) + m_t * gmem_t):
//   sweep A (t ascending): the refractory gate, re-run from H; for backward neurons delta,
//     the threshold gradient, the adjoint b_t = delta_t + lam b_{t-1} (= dL/dx_t before
//     masking) and dL/dlam_b = sum_t b_{t-1} H_t; for forward neurons (refractory rule only)
//     just one gate byte per step, the one thing a descending sweep cannot work out;
//   sweep B (t descending, forward neurons): delta from H and the gate byte, the threshold
//     gradient, a_t = delta_t + lam a_{t+1}, dL/dlam_f = sum_t a_{t+1} H_t.
// Each array is read once per direction a neuron needs and grad_x written once.  Parameter
// gradients are accumulated per neuron in double and reduced per channel here.  Large output
// arrays get transparent huge pages (madvise), so that their first touch costs 512 times fewer
// page faults.

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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
constexpr long long AHEAD = 8;         // rows prefetched ahead of the time loop
constexpr long long CHUNK_MIN = 1024;  // neurons: 4 KiB rows of float32

// a chunk's row of an array is short (its neurons) and the next row lies M elements further:
// the hardware prefetcher, which follows one page at a time, loses every row, so the rows
// AHEAD steps ahead are prefetched by hand (WRITE: a row about to be written)
template <int WRITE, typename R>
inline void prefetch_row(const R* p, long long n) {
  const char* c = (const char*)p;
  const long long bytes = n * (long long)sizeof(R);
  for (long long o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, WRITE, 3);
}
constexpr long long MAX_CHUNKS = 4 * MAX_THREADS;

struct Shape {
  long long T, M, N, C, inner;
  long long B;           // neurons per block: C * inner
  long long F;           // forward neurons at the start of a block: ceil(C/2) * inner
  long long per_sample;  // M / N
};

struct Segment {
  long long j;       // first neuron
  long long n;       // length
  long long k;       // offset inside the block (index into the per-block parameter arrays)
  long long local;   // offset inside the thread's range (index into its state arrays)
  long long sample;  // sample of these neurons (row of the mask)
  long long flocal;  // offset among the range's forward neurons (index into the gate bytes)
  int backward;      // 1: a backward (anti-causal) neuron
};

// the segments of [j0, j1): maximal runs of neurons of one direction inside one block
Segment* make_segments(const Shape& sh, long long j0, long long j1, long long* count,
                       long long* forward_count) {
  long long blocks = (j1 - 1) / sh.B - j0 / sh.B + 1;
  Segment* segs = (Segment*)malloc(sizeof(Segment) * (size_t)(2 * blocks + 2));
  if (!segs) return nullptr;
  long long c = 0, f = 0;
  for (long long o = j0 / sh.B; o * sh.B < j1; ++o) {
    long long base = o * sh.B;
    long long bounds[3] = {base, base + sh.F, base + sh.B};
    for (int d = 0; d < 2; ++d) {
      long long a = bounds[d] > j0 ? bounds[d] : j0;
      long long b = bounds[d + 1] < j1 ? bounds[d + 1] : j1;
      if (b <= a) continue;
      segs[c].j = a;
      segs[c].n = b - a;
      segs[c].k = a - base;
      segs[c].local = a - j0;
      segs[c].sample = a / sh.per_sample;
      segs[c].flocal = f;
      segs[c].backward = d;
      if (!d) f += b - a;
      ++c;
    }
  }
  *count = c;
  if (forward_count) *forward_count = f;
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

// the refractory rule for one neuron and step (bitwise logic, no branches: loops over it stay
// vectorisable): updates the steps-since-spike counter q, returns keep | 2 * raw
template <typename R>
inline int raw_spike(R d, int ge) {  // d = H - thr; fire_ge: H >= thr, else H > thr
  return (ge & (d >= (R)0)) | ((ge ^ 1) & (d > (R)0));
}

template <typename R>
inline int refractory_step(R d, int32_t* q, int ge, int r) {
  const int raw = raw_spike(d, ge);
  const int32_t since = *q;
  const int keep = raw & ((since < 0) | (since >= r));
  *q = keep ? 0 : (raw ? since + 1 : -1);
  return keep | (raw << 1);
}

// the surrogate gradient passes where a spike was kept or none was raised: a suppressed spike
// passes no gradient
inline int gate_of(int step) { return (step & 1) | ((step >> 1) ^ 1); }

template <typename R>
struct FwdArgs {
  const R* x;
  const uint8_t* mask;
  const R* lamk;  // [B]: the decay of every neuron of a block (lam_f or lam_b by direction)
  const R* thrk;  // [B]
  R* spikes;
  R* H;    // raw membrane (padded steps included), kept for the backward pass
  R* mem;  // optional: the membrane output (0 at padded steps); may alias H
  Shape sh;
  int fire_ge, refractory;
  long long j0, j1;
  int status;
};

template <typename R, bool REF>
void forward_range(FwdArgs<R>* a) {
  const Shape sh = a->sh;
  const long long len = a->j1 - a->j0, T = sh.T, M = sh.M;
  long long nseg = 0;
  Segment* segs = make_segments(sh, a->j0, a->j1, &nseg, nullptr);
  R* state = (R*)calloc((size_t)len, sizeof(R));
  int32_t* since = (int32_t*)malloc(sizeof(int32_t) * (size_t)len);
  if (!segs || !state || !since) {
    free(segs), free(state), free(since);
    a->status = 1;
    return;
  }
  for (long long i = 0; i < len; ++i) since[i] = -1;
  const int ge = a->fire_ge, r = a->refractory;
  // sweep R: the backward neurons' membranes, from the last step to the first
  for (long long t = T - 1; t >= 0; --t) {
    for (long long s = 0; s < nseg; ++s) {
      const Segment g = segs[s];
      if (!g.backward) continue;
      const bool valid = !a->mask || a->mask[t * sh.N + g.sample];
      const R* __restrict xr = a->x + t * M + g.j;
      R* __restrict hr = a->H + t * M + g.j;
      if (t >= AHEAD) {
        prefetch_row<0>(xr - AHEAD * M, g.n);
        prefetch_row<1>(hr - AHEAD * M, g.n);
      }
      const R* __restrict lam = a->lamk + g.k;
      R* __restrict h = state + g.local;
      if (valid) {
        for (long long i = 0; i < g.n; ++i) hr[i] = h[i] = lam[i] * h[i] + xr[i];
      } else {
        for (long long i = 0; i < g.n; ++i) hr[i] = h[i] = lam[i] * h[i];
      }
    }
  }
  // sweep F: the forward neurons' membranes, and spikes for everyone, first step to last
  for (long long t = 0; t < T; ++t) {
    for (long long s = 0; s < nseg; ++s) {
      const Segment g = segs[s];
      const bool valid = !a->mask || a->mask[t * sh.N + g.sample];
      const R* __restrict xr = a->x + t * M + g.j;
      R* hr = a->H + t * M + g.j;
      R* mr = a->mem ? a->mem + t * M + g.j : nullptr;
      R* __restrict sp = a->spikes + t * M + g.j;
      if (t + AHEAD < T) {
        if (!g.backward) prefetch_row<0>(xr + AHEAD * M, g.n);
        prefetch_row<1>(hr + AHEAD * M, g.n);
        prefetch_row<1>(sp + AHEAD * M, g.n);
        if (mr && mr != hr) prefetch_row<1>(mr + AHEAD * M, g.n);
      }
      const R* __restrict lam = a->lamk + g.k;
      const R* __restrict th = a->thrk + g.k;
      R* __restrict h = state + g.local;
      int32_t* __restrict sn = since + g.local;
      if (!g.backward) {
        if (valid) {
          for (long long i = 0; i < g.n; ++i) hr[i] = h[i] = lam[i] * h[i] + xr[i];
        } else {
          for (long long i = 0; i < g.n; ++i) hr[i] = h[i] = lam[i] * h[i];
        }
      }
      if (!valid) {
        for (long long i = 0; i < g.n; ++i) sp[i] = (R)0;
        if (REF)
          for (long long i = 0; i < g.n; ++i) sn[i] = -1;
        if (mr)
          for (long long i = 0; i < g.n; ++i) mr[i] = (R)0;
        continue;
      }
      for (long long i = 0; i < g.n; ++i) {
        const R d = hr[i] - th[i];
        const int keep = REF ? refractory_step(d, sn + i, ge, r) & 1 : raw_spike(d, ge);
        sp[i] = keep ? (R)1 : (R)0;
      }
      if (mr && mr != hr)
        for (long long i = 0; i < g.n; ++i) mr[i] = hr[i];
    }
  }
  free(segs), free(state), free(since);
  a->status = 0;
}

template <typename R>
struct BwdArgs {
  const R* g;    // dL/dspikes [T, M], or one value (g_const), or null (no gradient)
  int g_const;
  const R* gm;   // dL/dmembrane [T, M] or null
  const uint8_t* mask;
  const R* lamk;
  const R* thrk;
  const R* H;
  R* grad_x;
  double* acc_lam;  // [M] per-neuron dL/dlam
  double* acc_thr;  // [M] per-neuron dL/dthr
  Shape sh;
  int fire_ge, refractory;
  R sg_a, sg_b;
  long long j0, j1;
  int status;
};

// one row of the adjoint recurrence for one segment: delta, the threshold and decay sums and
// the adjoint (= dL/dx before masking), which runs the other way in time than the membrane.
// GATE: 0 no refractory rule; 1 re-run the rule from H (state sn, the sweep runs forward in
// time); 2 read the gate bytes gt that sweep A recorded (sweep B, backward in time)
template <typename R, int KIND, int GATE>
inline void adjoint_row(long long n, const R* __restrict hr, const R* __restrict th,
                        const R* __restrict lam, const R* __restrict gr,
                        const R* __restrict gmr, int32_t* __restrict sn,
                        const uint8_t* __restrict gt, R* __restrict adj, double* __restrict sl,
                        double* __restrict st, R* __restrict gx, int ge, int r, R sa, R sb) {
  for (long long i = 0; i < n; ++i) {
    const R v = hr[i];
    const R d = v - th[i];
    R gate = (R)1;
    if (GATE == 1) gate = (R)gate_of(refractory_step(d, sn + i, ge, r));
    if (GATE == 2) gate = (R)gt[i];
    const R gs = gr[i] * sg_grad<R, KIND>(d, sa, sb) * gate;
    st[i] -= (double)gs;
    const R delta = gs + gmr[i];
    sl[i] += (double)adj[i] * (double)v;
    const R next = delta + lam[i] * adj[i];
    adj[i] = next;
    gx[i] = next;
  }
}

// one row of sweep A for a segment of forward neurons (refractory rule only): the gate byte
// of every neuron, which sweep B, running the other way, cannot work out for itself
template <typename R>
inline void gate_row(long long n, const R* __restrict hr, const R* __restrict th,
                     int32_t* __restrict sn, uint8_t* __restrict gt, int ge, int r) {
  for (long long i = 0; i < n; ++i)
    gt[i] = (uint8_t)gate_of(refractory_step(hr[i] - th[i], sn + i, ge, r));
}

// the rows of dL/dspikes and dL/dmembrane at step t: a constant or absent dL/dspikes and an
// absent dL/dmembrane read per-thread buffers, so that one branch-free (vectorised) loop serves
// every case
template <typename R>
inline void grad_rows(const BwdArgs<R>* a, long long t, const Segment& sg, const R* gconst,
                      const R* zeros, const R** gr, const R** gmr) {
  const long long at = t * a->sh.M + sg.j;
  *gr = a->g && !a->g_const ? a->g + at : gconst + sg.local;
  *gmr = a->gm ? a->gm + at : zeros + sg.local;
}

template <typename R>
inline void prefetch_grads(const BwdArgs<R>* a, long long t, const Segment& sg) {
  const long long at = t * a->sh.M + sg.j;
  if (a->g && !a->g_const) prefetch_row<0>(a->g + at, sg.n);
  if (a->gm) prefetch_row<0>(a->gm + at, sg.n);
}

// sweep A, first step to last: backward neurons complete (their adjoint runs forward in
// time); forward neurons only record their refractory gates
template <typename R, int KIND, bool REF>
void sweep_a(const BwdArgs<R>* a, const Segment* segs, long long nseg, long long nf,
             R* adj, double* s_lam, double* s_thr, int32_t* since, uint8_t* gates,
             const R* gconst, const R* zeros) {
  const Shape sh = a->sh;
  const long long T = sh.T, M = sh.M;
  for (long long t = 0; t < T; ++t) {
    for (long long s = 0; s < nseg; ++s) {
      const Segment sg = segs[s];
      if (!sg.backward && !REF) continue;
      const bool valid = !a->mask || a->mask[t * sh.N + sg.sample];
      const R* __restrict hr = a->H + t * M + sg.j;
      R* __restrict gx = a->grad_x + t * M + sg.j;
      if (t + AHEAD < T) {
        prefetch_row<0>(hr + AHEAD * M, sg.n);
        if (sg.backward) prefetch_row<1>(gx + AHEAD * M, sg.n);
        if (sg.backward) prefetch_grads(a, t + AHEAD, sg);
      }
      const R* __restrict lam = a->lamk + sg.k;
      const R* th = a->thrk + sg.k;
      R* __restrict b = adj + sg.local;
      double* __restrict sl = s_lam + sg.local;
      int32_t* __restrict sn = since + sg.local;
      if (!valid) {
        if (REF)
          for (long long i = 0; i < sg.n; ++i) sn[i] = -1;
        if (sg.backward) {
          for (long long i = 0; i < sg.n; ++i) {
            sl[i] += (double)b[i] * (double)hr[i];
            b[i] = lam[i] * b[i];
            gx[i] = (R)0;
          }
        }
        continue;
      }
      if (!sg.backward) {
        gate_row<R>(sg.n, hr, th, sn, gates + t * nf + sg.flocal, a->fire_ge, a->refractory);
        continue;
      }
      const R *gr, *gmr;
      grad_rows(a, t, sg, gconst, zeros, &gr, &gmr);
      adjoint_row<R, KIND, REF ? 1 : 0>(sg.n, hr, th, lam, gr, gmr, sn, nullptr, b, sl,
                                        s_thr + sg.local, gx, a->fire_ge, a->refractory,
                                        a->sg_a, a->sg_b);
    }
  }
}

// sweep B, last step to first: the forward neurons, from the membrane and the gate bytes
template <typename R, int KIND, bool REF>
void sweep_b(const BwdArgs<R>* a, const Segment* segs, long long nseg, long long nf,
             R* adj, double* s_lam, double* s_thr, const uint8_t* gates, const R* gconst,
             const R* zeros) {
  const Shape sh = a->sh;
  const long long T = sh.T, M = sh.M;
  for (long long t = T - 1; t >= 0; --t) {
    for (long long s = 0; s < nseg; ++s) {
      const Segment sg = segs[s];
      if (sg.backward) continue;
      const bool valid = !a->mask || a->mask[t * sh.N + sg.sample];
      const R* __restrict hr = a->H + t * M + sg.j;
      R* __restrict gx = a->grad_x + t * M + sg.j;
      if (t >= AHEAD) {
        prefetch_row<0>(hr - AHEAD * M, sg.n);
        prefetch_row<1>(gx - AHEAD * M, sg.n);
        prefetch_grads(a, t - AHEAD, sg);
      }
      const R* __restrict lam = a->lamk + sg.k;
      R* __restrict ab = adj + sg.local;
      double* __restrict sl = s_lam + sg.local;
      if (!valid) {
        for (long long i = 0; i < sg.n; ++i) {
          sl[i] += (double)ab[i] * (double)hr[i];
          ab[i] = lam[i] * ab[i];
          gx[i] = (R)0;
        }
        continue;
      }
      const R *gr, *gmr;
      grad_rows(a, t, sg, gconst, zeros, &gr, &gmr);
      const uint8_t* gt = REF ? gates + t * nf + sg.flocal : nullptr;
      adjoint_row<R, KIND, REF ? 2 : 0>(sg.n, hr, a->thrk + sg.k, lam, gr, gmr, nullptr, gt, ab,
                                        sl, s_thr + sg.local, gx, a->fire_ge, a->refractory,
                                        a->sg_a, a->sg_b);
    }
  }
}

template <typename R, int KIND, bool REF>
void backward_range(BwdArgs<R>* a) {
  const long long len = a->j1 - a->j0;
  long long nseg = 0, nf = 0;
  Segment* segs = make_segments(a->sh, a->j0, a->j1, &nseg, &nf);
  R* adj = (R*)calloc((size_t)len, sizeof(R));
  double* s_lam = (double*)calloc((size_t)len, sizeof(double));
  double* s_thr = (double*)calloc((size_t)len, sizeof(double));
  int32_t* since = (int32_t*)malloc(sizeof(int32_t) * (size_t)len);
  R* gconst = (R*)malloc(sizeof(R) * (size_t)len);
  R* zeros = (R*)calloc((size_t)len, sizeof(R));
  uint8_t* gates = REF ? (uint8_t*)malloc((size_t)(a->sh.T * nf) + 1) : nullptr;
  if (!segs || !adj || !s_lam || !s_thr || !since || !gconst || !zeros || (REF && !gates)) {
    free(segs), free(adj), free(s_lam), free(s_thr), free(since), free(gconst), free(zeros);
    free(gates);
    a->status = 1;
    return;
  }
  for (long long i = 0; i < len; ++i) since[i] = -1;
  const R g0 = (a->g && a->g_const) ? a->g[0] : (R)0;
  for (long long i = 0; i < len; ++i) gconst[i] = g0;
  sweep_a<R, KIND, REF>(a, segs, nseg, nf, adj, s_lam, s_thr, since, gates, gconst, zeros);
  for (long long i = 0; i < len; ++i) adj[i] = (R)0;
  sweep_b<R, KIND, REF>(a, segs, nseg, nf, adj, s_lam, s_thr, gates, gconst, zeros);
  memcpy(a->acc_lam + a->j0, s_lam, sizeof(double) * (size_t)len);
  memcpy(a->acc_thr + a->j0, s_thr, sizeof(double) * (size_t)len);
  free(segs), free(adj), free(s_lam), free(s_thr), free(since), free(gconst), free(zeros);
  free(gates);
  a->status = 0;
}

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

// run F on every chunk with up to `threads` threads, the caller being one of them.  Helper
// threads are detached and the caller waits for the chunks, not for the threads: on a busy
// machine a helper that is not scheduled in time costs nothing (the caller does its share).
// The queue lives on the heap until its last user leaves.  Returns the first failure status.
template <typename A, void (*F)(A*)>
int run_parallel(A* chunks, long long count, int threads) {
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
  for (long long c = 0; c < count; ++c)
    if (chunks[c].status) return chunks[c].status;
  return 0;
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
            R* spikes, R* H, R* mem, long long T, long long M, long long N, long long C,
            long long inner, int fire_ge, int refractory, int threads) {
  if (T < 1 || M < 1 || N < 1 || C < 1 || inner < 1 || M % (C * inner) || M % N) return 2;
  Shape sh = make_shape(T, M, N, C, inner);
  R *lamk = nullptr, *thrk = nullptr;
  if (!block_params(sh, lam_f, lam_b, thr, &lamk, &thrk)) {
    free(lamk), free(thrk);
    return 1;
  }
  const size_t bytes = sizeof(R) * (size_t)T * (size_t)M;
  advise_huge(spikes, bytes), advise_huge(H, bytes);
  if (mem != H) advise_huge(mem, bytes);
  long long lo[MAX_CHUNKS], hi[MAX_CHUNKS];
  long long n = split_chunks(M, T, &threads, lo, hi);
  FwdArgs<R> args[MAX_CHUNKS];
  for (long long i = 0; i < n; ++i)
    args[i] = FwdArgs<R>{x, mask, lamk, thrk, spikes, H, mem, sh, fire_ge, refractory,
                         lo[i], hi[i], 0};
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
             const R* lam_b, const R* thr, const R* H, R* grad_x, R* g_lam_f, R* g_lam_b,
             R* g_thr, long long T, long long M, long long N, long long C, long long inner,
             int fire_ge, int refractory, int sg_kind, double sg_a, double sg_b, int threads) {
  if (T < 1 || M < 1 || N < 1 || C < 1 || inner < 1 || M % (C * inner) || M % N) return 2;
  if (sg_kind < 0 || sg_kind > 3) return 3;
  Shape sh = make_shape(T, M, N, C, inner);
  R *lamk = nullptr, *thrk = nullptr;
  double* acc_lam = (double*)malloc(sizeof(double) * (size_t)M);
  double* acc_thr = (double*)malloc(sizeof(double) * (size_t)M);
  if (!acc_lam || !acc_thr || !block_params(sh, lam_f, lam_b, thr, &lamk, &thrk)) {
    free(lamk), free(thrk), free(acc_lam), free(acc_thr);
    return 1;
  }
  advise_huge(grad_x, sizeof(R) * (size_t)T * (size_t)M);
  long long lo[MAX_CHUNKS], hi[MAX_CHUNKS];
  long long n = split_chunks(M, T, &threads, lo, hi);
  BwdArgs<R> args[MAX_CHUNKS];
  for (long long i = 0; i < n; ++i)
    args[i] = BwdArgs<R>{g, g_const, gm, mask, lamk, thrk, H, grad_x, acc_lam, acc_thr, sh,
                         fire_ge, refractory, (R)sg_a, (R)sg_b, lo[i], hi[i], 0};
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

// ctypes entry points; return 0 on success, 1 out of memory, 2 bad shape, 3 bad surrogate
#define BPSN_FWD_ARGS(R)                                                                    \
  const R *x, const uint8_t *mask, const R *lam_f, const R *lam_b, const R *thr, R *spikes, \
      R *H, R *mem, long long T, long long M, long long N, long long C, long long inner,    \
      int fire_ge, int refractory, int threads
#define BPSN_BWD_ARGS(R)                                                                     \
  const R *g, int g_const, const R *gm, const uint8_t *mask, const R *lam_f, const R *lam_b, \
      const R *thr, const R *H, R *grad_x, R *g_lam_f, R *g_lam_b, R *g_thr, long long T,    \
      long long M, long long N, long long C, long long inner, int fire_ge, int refractory,   \
      int sg_kind, double sg_a, double sg_b, int threads

extern "C" {

int bpsn_cpu_abi_version() { return 1; }

int bpsn_cpu_forward_f32(BPSN_FWD_ARGS(float)) {
  return forward<float>(x, mask, lam_f, lam_b, thr, spikes, H, mem, T, M, N, C, inner, fire_ge,
                        refractory, threads);
}

int bpsn_cpu_forward_f64(BPSN_FWD_ARGS(double)) {
  return forward<double>(x, mask, lam_f, lam_b, thr, spikes, H, mem, T, M, N, C, inner, fire_ge,
                         refractory, threads);
}

int bpsn_cpu_backward_f32(BPSN_BWD_ARGS(float)) {
  return backward<float>(g, g_const, gm, mask, lam_f, lam_b, thr, H, grad_x, g_lam_f, g_lam_b,
                         g_thr, T, M, N, C, inner, fire_ge, refractory, sg_kind, sg_a, sg_b,
                         threads);
}

int bpsn_cpu_backward_f64(BPSN_BWD_ARGS(double)) {
  return backward<double>(g, g_const, gm, mask, lam_f, lam_b, thr, H, grad_x, g_lam_f, g_lam_b,
                          g_thr, T, M, N, C, inner, fire_ge, refractory, sg_kind, sg_a, sg_b,
                          threads);
}

}  // extern "C"
