// Fused S4D scan: the diagonal recurrence of a (unidirectional) S4D over a whole [T, N, H] input.
//
// One thread per (sample n, channel h), j = n * H + h (a column of the [T, M] input, M = N * H).
// Per channel P complex modes, already discretised (ZOH) in torch:
//
//     x_p,t = A_bar_p x_p,t-1 + B_bar_p u_t,   y_t = 2 Re(sum_p C_p x_p,t) + D u_t
//
// Padding (as bpsn_ext.layers.S4D.forward): u_t = x_t * m_t enters, y_t is multiplied by m_t
// (m_t = 1 for a real step, 0 for padding; the state still decays through padded steps).
// The loop is mode-outer, time-inner, so each mode's state lives in registers; y is accumulated
// in float32.  The backward pass recomputes one mode's states into a [T, M] complex scratch and
// runs the reverse-time adjoint  lam_t = conj(A_bar) lam_t+1 + 2 g_t conj(C)  over it.
//
// Layout: u, y, grad_y, grad_u: [T, M] float32.  mask: [T, N] uint8 or unused.  Complex arrays
// are interleaved (re, im) pairs, i.e. torch.view_as_real: A_bar, B_bar, C: [H, P, 2];
// D: [H]; x0, xT, grad_xT, grad_x0 and the per-thread partial sums gA, gB, gC: [M, P, 2]
// (= [N, H, P, 2]); gD: [M]; scratch: [T, M, 2].  The per-thread partials are summed over n by
// the caller.  The code is plain C++ in SSM_HD functions, so the tests also compile it as host
// C++ (SSM_HOST_TEST) and compare it with the torch S4D on machines without a GPU.

#ifdef SSM_HOST_TEST
#define SSM_HD inline
#else
#define SSM_HD __device__ __forceinline__
#endif

struct SsmCplx {
  float re, im;
};

SSM_HD SsmCplx ssm_load(const float* p, long long i) { return SsmCplx{p[2 * i], p[2 * i + 1]}; }
SSM_HD void ssm_store(float* p, long long i, SsmCplx v) {
  p[2 * i] = v.re;
  p[2 * i + 1] = v.im;
}
// a * x + b * u  (u real)
SSM_HD SsmCplx ssm_step(SsmCplx a, SsmCplx x, SsmCplx b, float u) {
  return SsmCplx{(a.re * x.re - a.im * x.im) + b.re * u, (a.re * x.im + a.im * x.re) + b.im * u};
}
// conj(a) * l
SSM_HD SsmCplx ssm_conj_mul(SsmCplx a, SsmCplx l) {
  return SsmCplx{a.re * l.re + a.im * l.im, a.re * l.im - a.im * l.re};
}

SSM_HD float ssm_mask(const unsigned char* mask, long long t, long long N, long long n) {
  return mask == nullptr ? 1.0f : (mask[t * N + n] ? 1.0f : 0.0f);
}

SSM_HD void s4d_forward_channel(long long j, const float* u, const unsigned char* mask,
                                const float* A_bar, const float* B_bar, const float* C,
                                const float* D, const float* x0, float* y, float* xT,
                                long long T, long long N, long long H, long long P) {
  const long long M = N * H, n = j / H, h = j % H;
  const float d = D[h];
  for (long long t = 0; t < T; ++t) {
    float uv = mask == nullptr ? u[t * M + j] : u[t * M + j] * ssm_mask(mask, t, N, n);
    y[t * M + j] = d * uv;
  }
  for (long long p = 0; p < P; ++p) {
    const SsmCplx a = ssm_load(A_bar, h * P + p), b = ssm_load(B_bar, h * P + p);
    const SsmCplx c = ssm_load(C, h * P + p);
    SsmCplx x = x0 == nullptr ? SsmCplx{0.0f, 0.0f} : ssm_load(x0, j * P + p);
    for (long long t = 0; t < T; ++t) {
      float uv = mask == nullptr ? u[t * M + j] : u[t * M + j] * ssm_mask(mask, t, N, n);
      x = ssm_step(a, x, b, uv);
      y[t * M + j] += 2.0f * (c.re * x.re - c.im * x.im);
    }
    ssm_store(xT, j * P + p, x);
  }
  if (mask != nullptr)
    for (long long t = 0; t < T; ++t) y[t * M + j] *= ssm_mask(mask, t, N, n);
}

SSM_HD void s4d_backward_channel(long long j, const float* grad_y, const float* grad_xT,
                                 const float* u, const unsigned char* mask, const float* A_bar,
                                 const float* B_bar, const float* C, const float* D,
                                 const float* x0, float* scratch, float* grad_u, float* gA,
                                 float* gB, float* gC, float* gD, float* grad_x0, long long T,
                                 long long N, long long H, long long P) {
  const long long M = N * H, n = j / H, h = j % H;
  const float d = D[h];
  // D u term: grad_uv_t = D g_t m_t; gD = sum_t g_t m_t uv_t
  float sD = 0.0f;
  for (long long t = 0; t < T; ++t) {
    float m = ssm_mask(mask, t, N, n);
    float g = grad_y[t * M + j] * m;
    sD += g * (u[t * M + j] * m);
    grad_u[t * M + j] = d * g;
  }
  gD[j] = sD;
  for (long long p = 0; p < P; ++p) {
    const SsmCplx a = ssm_load(A_bar, h * P + p), b = ssm_load(B_bar, h * P + p);
    const SsmCplx c = ssm_load(C, h * P + p);
    // forward again: scratch[t] = x_{t-1}
    SsmCplx x = x0 == nullptr ? SsmCplx{0.0f, 0.0f} : ssm_load(x0, j * P + p);
    for (long long t = 0; t < T; ++t) {
      ssm_store(scratch, t * M + j, x);
      x = ssm_step(a, x, b, u[t * M + j] * ssm_mask(mask, t, N, n));
    }
    // reverse time: lam_t = dL/dx_t = carry + 2 g_t m_t conj(C), carry = conj(A_bar) lam_t+1
    SsmCplx carry = grad_xT == nullptr ? SsmCplx{0.0f, 0.0f} : ssm_load(grad_xT, j * P + p);
    SsmCplx sA{0.0f, 0.0f}, sB{0.0f, 0.0f}, sC{0.0f, 0.0f};
    for (long long t = T - 1; t >= 0; --t) {
      float m = ssm_mask(mask, t, N, n);
      float uv = u[t * M + j] * m;
      float g2 = 2.0f * (grad_y[t * M + j] * m);
      SsmCplx xp = ssm_load(scratch, t * M + j);
      SsmCplx xt = ssm_step(a, xp, b, uv);
      sC.re += g2 * xt.re;  // dL/dC = sum_t 2 g_t conj(x_t)
      sC.im -= g2 * xt.im;
      SsmCplx lam = SsmCplx{carry.re + g2 * c.re, carry.im - g2 * c.im};
      sA.re += lam.re * xp.re + lam.im * xp.im;  // dL/dA_bar = sum_t lam_t conj(x_{t-1})
      sA.im += lam.im * xp.re - lam.re * xp.im;
      sB.re += lam.re * uv;  // dL/dB_bar = sum_t lam_t uv_t
      sB.im += lam.im * uv;
      grad_u[t * M + j] += (b.re * lam.re + b.im * lam.im) * m;  // m Re(conj(B_bar) lam_t)
      carry = ssm_conj_mul(a, lam);
    }
    ssm_store(gA, j * P + p, sA);
    ssm_store(gB, j * P + p, sB);
    ssm_store(gC, j * P + p, sC);
    ssm_store(grad_x0, j * P + p, carry);  // dL/dx0 = conj(A_bar) lam_0
  }
}

// Entry points take scalars (not structs) so that CuPy and ctypes can pass them directly.
#define SSM_SCALARS \
  long long T, long long N, long long H, long long P, int has_mask, int has_x0, int has_gxT

#ifndef SSM_HOST_TEST
extern "C" __global__ void s4d_scan_forward(const float* u, const unsigned char* mask,
                                            const float* A_bar, const float* B_bar,
                                            const float* C, const float* D, const float* x0,
                                            float* y, float* xT, SSM_SCALARS) {
  long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (j < N * H)
    s4d_forward_channel(j, u, has_mask ? mask : nullptr, A_bar, B_bar, C, D,
                        has_x0 ? x0 : nullptr, y, xT, T, N, H, P);
}

extern "C" __global__ void s4d_scan_backward(const float* grad_y, const float* grad_xT,
                                             const float* u, const unsigned char* mask,
                                             const float* A_bar, const float* B_bar,
                                             const float* C, const float* D, const float* x0,
                                             float* scratch, float* grad_u, float* gA, float* gB,
                                             float* gC, float* gD, float* grad_x0,
                                             SSM_SCALARS) {
  long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (j < N * H)
    s4d_backward_channel(j, grad_y, has_gxT ? grad_xT : nullptr, u, has_mask ? mask : nullptr,
                         A_bar, B_bar, C, D, has_x0 ? x0 : nullptr, scratch, grad_u, gA, gB, gC,
                         gD, grad_x0, T, N, H, P);
}
#else
extern "C" void s4d_scan_forward_host(const float* u, const unsigned char* mask,
                                      const float* A_bar, const float* B_bar, const float* C,
                                      const float* D, const float* x0, float* y, float* xT,
                                      SSM_SCALARS) {
  for (long long j = 0; j < N * H; ++j)
    s4d_forward_channel(j, u, has_mask ? mask : nullptr, A_bar, B_bar, C, D,
                        has_x0 ? x0 : nullptr, y, xT, T, N, H, P);
}

extern "C" void s4d_scan_backward_host(const float* grad_y, const float* grad_xT, const float* u,
                                       const unsigned char* mask, const float* A_bar,
                                       const float* B_bar, const float* C, const float* D,
                                       const float* x0, float* scratch, float* grad_u, float* gA,
                                       float* gB, float* gC, float* gD, float* grad_x0,
                                       SSM_SCALARS) {
  for (long long j = 0; j < N * H; ++j)
    s4d_backward_channel(j, grad_y, has_gxT ? grad_xT : nullptr, u, has_mask ? mask : nullptr,
                         A_bar, B_bar, C, D, has_x0 ? x0 : nullptr, scratch, grad_u, gA, gB, gC,
                         gD, grad_x0, T, N, H, P);
}
#endif
