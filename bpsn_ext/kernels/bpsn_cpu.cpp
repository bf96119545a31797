// Native CPU kernels of the default BPSN (leak kernel, split fusion, refractory or no rule).
//
// Loaded with ctypes by bpsn_ext/kernels/cpu_native.py (no torch headers: it compiles in 2-3 s,
// once; the library is cached).  Same maths as the torch path of bpsn_ext/core/bpsn.py and the CUDA kernels of
// bpsn_kernels.cu, specialised to split fusion, where every neuron needs one direction only:
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
// shared counter (about 4 chunks per thread, so a thread the OS delays holds nobody up) and
// run all T steps for a chunk, streaming one slice per row with the chunk's state (a few arrays
// of the chunk's width) in cache.  Results do not depend on the chunking.
//
// Backward (delta_t = dL/dH_t = g_t * gate_t * m_t * sg'(H_t - thr) + m_t * gmem_t):
//   sweep A (t ascending, all neurons): the refractory gate (re-run from H), delta, the
//     threshold gradient; for backward neurons also the adjoint b_t = delta_t + lam b_{t-1}
//     (= dL/dx_t before masking) and dL/dlam_b = sum_t b_{t-1} H_t;
//   sweep B (t descending, forward neurons): a_t = delta_t + lam a_{t+1},
//     dL/dlam_f = sum_t a_{t+1} H_t.
// Parameter gradients are accumulated per neuron in double and reduced per channel here.

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

namespace {

constexpr int MAX_THREADS = 64;
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
  int backward;      // 1: a backward (anti-causal) neuron
};

// the segments of [j0, j1): maximal runs of neurons of one direction inside one block
Segment* make_segments(const Shape& sh, long long j0, long long j1, long long* count) {
  long long blocks = (j1 - 1) / sh.B - j0 / sh.B + 1;
  Segment* segs = (Segment*)malloc(sizeof(Segment) * (size_t)(2 * blocks + 2));
  if (!segs) return nullptr;
  long long c = 0;
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
      segs[c].backward = d;
      ++c;
    }
  }
  *count = c;
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
  Segment* segs = make_segments(sh, a->j0, a->j1, &nseg);
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
        const int raw = (ge & (d >= (R)0)) | ((ge ^ 1) & (d > (R)0));
        int keep = raw;
        if (REF) {
          const int32_t q = sn[i];
          keep = raw & ((q < 0) | (q >= r));
          sn[i] = keep ? 0 : (raw ? q + 1 : -1);
        }
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

// one row of sweep A for one segment: refractory gate, delta, threshold sum, and for backward
// neurons the adjoint b and the decay sum (forward neurons park delta in gx for sweep B)
template <typename R, int KIND, bool REF, bool BWD>
inline void sweep_a_row(long long n, const R* __restrict hr, const R* __restrict th,
                        const R* __restrict lam, const R* __restrict gr,
                        const R* __restrict gmr, R* __restrict b, double* __restrict sl,
                        double* __restrict st, int32_t* __restrict sn, R* __restrict gx, int ge,
                        int r, R sa, R sb) {
  for (long long i = 0; i < n; ++i) {
    const R v = hr[i];
    const R d = v - th[i];
    R gate = (R)1;
    if (REF) {  // bitwise logic, no branches: the loop stays vectorisable
      const int raw = (ge & (d >= (R)0)) | ((ge ^ 1) & (d > (R)0));
      const int32_t q = sn[i];
      const int keep = raw & ((q < 0) | (q >= r));
      sn[i] = keep ? 0 : (raw ? q + 1 : -1);
      gate = (R)(keep | (raw ^ 1));  // a suppressed spike passes no gradient
    }
    const R gs = gr[i] * sg_grad<R, KIND>(d, sa, sb) * gate;
    st[i] -= (double)gs;
    const R delta = gs + gmr[i];
    if (BWD) {
      sl[i] += (double)b[i] * (double)v;
      const R nb = delta + lam[i] * b[i];
      b[i] = nb;
      gx[i] = nb;
    } else {
      gx[i] = delta;
    }
  }
}

template <typename R, int KIND, bool REF>
void backward_range(BwdArgs<R>* a) {
  const Shape sh = a->sh;
  const long long len = a->j1 - a->j0, T = sh.T, M = sh.M;
  long long nseg = 0;
  Segment* segs = make_segments(sh, a->j0, a->j1, &nseg);
  R* adj = (R*)calloc((size_t)len, sizeof(R));
  double* s_lam = (double*)calloc((size_t)len, sizeof(double));
  double* s_thr = (double*)calloc((size_t)len, sizeof(double));
  int32_t* since = (int32_t*)malloc(sizeof(int32_t) * (size_t)len);
  R* gconst = (R*)malloc(sizeof(R) * (size_t)len);
  R* zeros = (R*)calloc((size_t)len, sizeof(R));
  if (!segs || !adj || !s_lam || !s_thr || !since || !gconst || !zeros) {
    free(segs), free(adj), free(s_lam), free(s_thr), free(since), free(gconst), free(zeros);
    a->status = 1;
    return;
  }
  for (long long i = 0; i < len; ++i) since[i] = -1;
  const int ge = a->fire_ge, r = a->refractory;
  const R sa = a->sg_a, sb = a->sg_b;
  const R g0 = (a->g && a->g_const) ? a->g[0] : (R)0;
  for (long long i = 0; i < len; ++i) gconst[i] = g0;
  // sweep A, first step to last
  for (long long t = 0; t < T; ++t) {
    for (long long s = 0; s < nseg; ++s) {
      const Segment sg = segs[s];
      const bool valid = !a->mask || a->mask[t * sh.N + sg.sample];
      const R* __restrict hr = a->H + t * M + sg.j;
      R* __restrict gx = a->grad_x + t * M + sg.j;
      const R* __restrict lam = a->lamk + sg.k;
      R* __restrict b = adj + sg.local;
      double* __restrict sl = s_lam + sg.local;
      double* __restrict st = s_thr + sg.local;
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
        } else {
          for (long long i = 0; i < sg.n; ++i) gx[i] = (R)0;
        }
        continue;
      }
      // a constant or absent dL/dspikes and an absent dL/dmembrane read per-thread buffers,
      // so that one branch-free (vectorised) loop serves every case
      const R* gr = a->g && !a->g_const ? a->g + t * M + sg.j : gconst + sg.local;
      const R* gmr = a->gm ? a->gm + t * M + sg.j : zeros + sg.local;
      const R* th = a->thrk + sg.k;
      if (sg.backward)
        sweep_a_row<R, KIND, REF, true>(sg.n, hr, th, lam, gr, gmr, b, sl, st, sn, gx, ge, r, sa,
                                        sb);
      else
        sweep_a_row<R, KIND, REF, false>(sg.n, hr, th, lam, gr, gmr, b, sl, st, sn, gx, ge, r,
                                         sa, sb);
    }
  }
  // sweep B, last step to first: the forward neurons' adjoint (grad_x holds delta so far)
  for (long long i = 0; i < len; ++i) adj[i] = (R)0;
  for (long long t = T - 1; t >= 0; --t) {
    for (long long s = 0; s < nseg; ++s) {
      const Segment sg = segs[s];
      if (sg.backward) continue;
      const bool valid = !a->mask || a->mask[t * sh.N + sg.sample];
      const R* __restrict hr = a->H + t * M + sg.j;
      R* __restrict gx = a->grad_x + t * M + sg.j;
      const R* __restrict lam = a->lamk + sg.k;
      R* __restrict ab = adj + sg.local;
      double* __restrict sl = s_lam + sg.local;
      for (long long i = 0; i < sg.n; ++i) {
        sl[i] += (double)ab[i] * (double)hr[i];
        ab[i] = gx[i] + lam[i] * ab[i];
      }
      if (valid) {
        for (long long i = 0; i < sg.n; ++i) gx[i] = ab[i];
      } else {
        for (long long i = 0; i < sg.n; ++i) gx[i] = (R)0;
      }
    }
  }
  memcpy(a->acc_lam + a->j0, s_lam, sizeof(double) * (size_t)len);
  memcpy(a->acc_thr + a->j0, s_thr, sizeof(double) * (size_t)len);
  free(segs), free(adj), free(s_lam), free(s_thr), free(since), free(gconst), free(zeros);
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
// machine, so with several threads there are about 4 per thread, each at least 64 neurons
// wide (a multiple of 16: whole cache lines); one thread takes all neurons at once
long long split_chunks(long long M, long long T, int* threads, long long* lo, long long* hi) {
  int n = *threads < 1 ? 1 : (*threads > MAX_THREADS ? MAX_THREADS : *threads);
  if (M * T < (1 << 15)) n = 1;  // thread start-up would cost more than it saves
  long long chunk = M;
  if (n > 1) {
    chunk = (M + 4 * n - 1) / (4 * n);
    chunk = (chunk + 15) / 16 * 16;
    if (chunk < 64) chunk = 64;
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
