// Fused BPSN kernels (leak kernels; split/gate/avg/sum fusion; refractory or no runaway rule).
//
// One thread per neuron j (a column of the [T, M] input, M = N * features): the backward
// branch is a reverse recurrence, the forward branch a forward one, both O(T) per thread and
// fully parallel across neurons.  The per-neuron code is plain C++ in BPSN_HD functions, so
// the test-suite also compiles this file as host C++ (BPSN_HOST_TEST) and checks it against
// the torch reference on machines without a GPU.
//
// Layout: x, spikes, membrane, hf, hb, grads: [T, M] contiguous.  mask: [T, N] uint8 or null.
// Neuron j belongs to sample n = j / (M / N) and channel c = (j / inner) % C.

#ifdef BPSN_HOST_TEST
#include <cmath>
#define BPSN_HD inline
#define BPSN_EXP expf
#define BPSN_ATAN_PI 3.14159265358979323846f
#else
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#define BPSN_HD __device__ __forceinline__
#define BPSN_EXP __expf
#define BPSN_ATAN_PI 3.14159265358979323846f
#endif

struct BpsnShape {
  long long T, M, N, C, inner;
};

struct BpsnConfig {
  int fire_ge;      // 1: fire at h - th >= 0 (SpikingJelly), 0: at > 0 (snnTorch)
  int refractory;   // 0: no rule, r >= 1: refractory steps
  float k0;         // 1 for "sum" fusion (the current step counted once), else 0
  int sg_kind;      // surrogate derivative: 0 ATan(a), 1 Sigmoid(a), 2 S2NN(a, b), 3 FastSigmoid(a)
  float sg_a, sg_b;
};

BPSN_HD float to_float(float v) { return v; }
#ifndef BPSN_HOST_TEST
BPSN_HD float to_float(__half v) { return __half2float(v); }
BPSN_HD float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename S> BPSN_HD S from_float(float v);
template <> BPSN_HD float from_float<float>(float v) { return v; }
template <> BPSN_HD __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> BPSN_HD __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
#else
template <typename S> BPSN_HD S from_float(float v) { return (S)v; }
#endif

BPSN_HD float surrogate_grad(float x, const BpsnConfig& cfg) {
  if (cfg.sg_kind == 0) {  // ATan: (a/2) / (1 + (pi a x / 2)^2)
    float a = cfg.sg_a / 2.0f;
    float ax = BPSN_ATAN_PI * a * x;
    return a / (1.0f + ax * ax);
  }
  if (cfg.sg_kind == 1) {  // Sigmoid: a s (1 - s)
    float s = 1.0f / (1.0f + BPSN_EXP(-cfg.sg_a * x));
    return (1.0f - s) * s * cfg.sg_a;
  }
  if (cfg.sg_kind == 2) {  // S2NN
    if (x < 0.0f) {
      float s = 1.0f / (1.0f + BPSN_EXP(-cfg.sg_a * x));
      return cfg.sg_a * s * (1.0f - s);
    }
    return cfg.sg_b / (x + 1.0f);
  }
  float d = cfg.sg_a * fabsf(x) + 1.0f;  // FastSigmoid: 1 / (k|x| + 1)^2
  return 1.0f / (d * d);
}

BPSN_HD bool fires(float h, float th, const BpsnConfig& cfg) {
  float d = h - th;
  return cfg.fire_ge ? d >= 0.0f : d > 0.0f;
}

// the run-based refractory rule, one step: returns whether a raw spike survives
BPSN_HD bool refractory_step(bool raw, int& since, int period) {
  if (period <= 0) return raw;
  bool keep = raw && (since < 0 || since >= period);
  since = raw ? (keep ? 0 : since + 1) : -1;
  return keep;
}

template <typename X>
BPSN_HD void forward_neuron(long long j, const X* x, const unsigned char* mask,
                            const float* lam_f, const float* lam_b, const float* w_f,
                            const float* w_b, const float* thr, X* spikes, X* membrane,
                            float* hf_out, float* hb_out, BpsnShape sh, BpsnConfig cfg) {
  const long long M = sh.M;
  const long long n = j / (M / sh.N);
  const long long c = (j / sh.inner) % sh.C;
  const float lf = lam_f[c], lb = lam_b[c], wf = w_f[c], wb = w_b[c], th = thr[c];
  float hb = 0.0f;
  for (long long t = sh.T - 1; t >= 0; --t) {
    bool valid = mask == nullptr || mask[t * sh.N + n];
    float xv = valid ? to_float(x[t * M + j]) : 0.0f;
    hb = lb * hb + xv;
    hb_out[t * M + j] = hb;
  }
  float hf = 0.0f;
  int since = -1;
  for (long long t = 0; t < sh.T; ++t) {
    bool valid = mask == nullptr || mask[t * sh.N + n];
    float xv = valid ? to_float(x[t * M + j]) : 0.0f;
    hf = lf * hf + xv;
    hf_out[t * M + j] = hf;
    float h = wf * hf + wb * hb_out[t * M + j] - cfg.k0 * xv;
    bool raw = valid && fires(h, th, cfg);
    bool s = refractory_step(raw, since, cfg.refractory);
    spikes[t * M + j] = from_float<X>(s ? 1.0f : 0.0f);
    membrane[t * M + j] = from_float<X>(valid ? h : 0.0f);
  }
}

// Gradients for one neuron.  delta_t = dL/dS_t * gate_t * valid_t * g'(H_t - th).
// Writes grad_x [T, M] and per-neuron partial sums of the parameter gradients
// (dL/dlam_f, dL/dlam_b, dL/dw_f, dL/dw_b, dL/dth), reduced per channel by the caller.
template <typename X, typename G>
BPSN_HD void backward_neuron(long long j, const G* grad_s, const X* x, const unsigned char* mask,
                             const float* lam_f, const float* lam_b, const float* w_f,
                             const float* w_b, const float* thr, const X* membrane,
                             const float* hf, const float* hb, float* delta, float* acc,
                             X* grad_x,
                             float* g_lf, float* g_lb, float* g_wf, float* g_wb, float* g_th,
                             BpsnShape sh, BpsnConfig cfg) {
  const long long M = sh.M;
  const long long n = j / (M / sh.N);
  const long long c = (j / sh.inner) % sh.C;
  const float lf = lam_f[c], lb = lam_b[c], wf = w_f[c], wb = w_b[c], th = thr[c];
  // pass 1, forward in time: delta, the backward-branch adjoint and the sums that need it
  float bbar = 0.0f, s_lb = 0.0f, s_wf = 0.0f, s_wb = 0.0f, s_th = 0.0f;
  int since = -1;
  for (long long t = 0; t < sh.T; ++t) {
    bool valid = mask == nullptr || mask[t * sh.N + n];
    float h = to_float(membrane[t * M + j]);
    bool raw = valid && fires(h, th, cfg);
    bool keep = refractory_step(raw, since, cfg.refractory);
    // a raw spike removed by the refractory rule passes no gradient (the gate is a constant)
    bool gate = cfg.refractory > 0 ? (keep || !raw) : true;
    float d = (valid && gate) ? to_float(grad_s[t * M + j]) * surrogate_grad(h - th, cfg) : 0.0f;
    s_th -= d;
    s_wf += d * hf[t * M + j];
    s_wb += d * hb[t * M + j];
    s_lb += bbar * hb[t * M + j];  // hb[t-1] = lb * hb[t] + x[t-1]
    bbar = wb * d + lb * bbar;
    delta[t * M + j] = d;
    acc[t * M + j] = bbar - cfg.k0 * d;
  }
  // pass 2, backward in time: the forward-branch adjoint
  float abar = 0.0f, s_lf = 0.0f;
  for (long long t = sh.T - 1; t >= 0; --t) {
    bool valid = mask == nullptr || mask[t * sh.N + n];
    s_lf += abar * hf[t * M + j];  // hf[t+1] = lf * hf[t] + x[t+1]
    abar = wf * delta[t * M + j] + lf * abar;
    float gx = valid ? acc[t * M + j] + abar : 0.0f;
    grad_x[t * M + j] = from_float<X>(gx);
  }
  g_lf[j] = s_lf;
  g_lb[j] = s_lb;
  g_wf[j] = s_wf;
  g_wb[j] = s_wb;
  g_th[j] = s_th;
}

// Entry points take scalars (not structs) so that CuPy and ctypes can pass them directly.
#define BPSN_SCALARS                                                                  \
  long long T, long long M, long long N, long long C, long long inner, int has_mask,   \
      int fire_ge, int refractory, float k0, int sg_kind, float sg_a, float sg_b
#define BPSN_MAKE_STRUCTS                                    \
  BpsnShape sh = {T, M, N, C, inner};                        \
  BpsnConfig cfg = {fire_ge, refractory, k0, sg_kind, sg_a, sg_b}; \
  const unsigned char* m = has_mask ? mask : nullptr;

#ifndef BPSN_HOST_TEST
template <typename X>
__global__ void bpsn_forward(const X* x, const unsigned char* mask, const float* lam_f,
                             const float* lam_b, const float* w_f, const float* w_b,
                             const float* thr, X* spikes, X* membrane, float* hf, float* hb,
                             BPSN_SCALARS) {
  BPSN_MAKE_STRUCTS
  long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (j < sh.M)
    forward_neuron<X>(j, x, m, lam_f, lam_b, w_f, w_b, thr, spikes, membrane, hf, hb, sh, cfg);
}

template <typename X, typename G>
__global__ void bpsn_backward(const G* grad_s, const X* x, const unsigned char* mask,
                              const float* lam_f, const float* lam_b, const float* w_f,
                              const float* w_b, const float* thr, const X* membrane,
                              const float* hf, const float* hb, float* delta, float* acc,
                              X* grad_x, float* g_lf, float* g_lb, float* g_wf, float* g_wb,
                              float* g_th, BPSN_SCALARS) {
  BPSN_MAKE_STRUCTS
  long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (j < sh.M)
    backward_neuron<X, G>(j, grad_s, x, m, lam_f, lam_b, w_f, w_b, thr, membrane, hf, hb,
                          delta, acc, grad_x, g_lf, g_lb, g_wf, g_wb, g_th, sh, cfg);
}
#else
extern "C" void bpsn_forward_host(const float* x, const unsigned char* mask, const float* lam_f,
                                  const float* lam_b, const float* w_f, const float* w_b,
                                  const float* thr, float* spikes, float* membrane, float* hf,
                                  float* hb, BPSN_SCALARS) {
  BPSN_MAKE_STRUCTS
  for (long long j = 0; j < sh.M; ++j)
    forward_neuron<float>(j, x, m, lam_f, lam_b, w_f, w_b, thr, spikes, membrane, hf, hb, sh,
                          cfg);
}

extern "C" void bpsn_backward_host(const float* grad_s, const float* x, const unsigned char* mask,
                                   const float* lam_f, const float* lam_b, const float* w_f,
                                   const float* w_b, const float* thr, const float* membrane,
                                   const float* hf, const float* hb, float* delta, float* acc,
                                   float* grad_x, float* g_lf, float* g_lb, float* g_wf,
                                   float* g_wb, float* g_th, BPSN_SCALARS) {
  BPSN_MAKE_STRUCTS
  for (long long j = 0; j < sh.M; ++j)
    backward_neuron<float, float>(j, grad_s, x, m, lam_f, lam_b, w_f, w_b, thr, membrane, hf,
                                  hb, delta, acc, grad_x, g_lf, g_lb, g_wf, g_wb, g_th, sh, cfg);
}
#endif
