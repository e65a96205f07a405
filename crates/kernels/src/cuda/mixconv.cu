// Mixed depthwise convolution on CUDA: every channel group (each with its own kernel size and
// padding) in one launch per pass, f32. Launched from src/cuda/mod.rs; the geometry struct below
// must match `GeomArg` there field for field.
//
// The kernels are direct (one thread per output, input-gradient or weight element): depthwise
// convolutions are memory-bound, and one launch instead of one per channel is what removes
// candle's overhead.

#define MAX_GROUPS 8

struct MixGeom {
    unsigned int n_groups;
    unsigned int channels;
    unsigned int in_h, in_w, out_h, out_w;
    unsigned int stride, dilation;
    unsigned int group_end[MAX_GROUPS];      // one past the group's last channel
    unsigned int kernel[MAX_GROUPS];
    unsigned int pad_top[MAX_GROUPS];
    unsigned int pad_left[MAX_GROUPS];
    unsigned int weight_offset[MAX_GROUPS];  // first weight of the group in the packed vector
};

__device__ __forceinline__ unsigned int group_of_channel(const MixGeom& g, unsigned int c) {
    unsigned int gi = 0;
    while (gi + 1 < g.n_groups && c >= g.group_end[gi]) ++gi;
    return gi;
}

__device__ __forceinline__ unsigned int group_start(const MixGeom& g, unsigned int gi) {
    return gi == 0 ? 0u : g.group_end[gi - 1];
}

// Codes as FusedAct::code in src/fused_act.rs.
__device__ __forceinline__ float activate(float v, unsigned int act) {
    switch (act) {
        case 1: return fmaxf(v, 0.0f);
        case 2: return fminf(fmaxf(v, 0.0f), 6.0f);
        case 3: return v / (1.0f + expf(-v));
        case 4: return v * (fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) / 6.0f);
        default: return v;
    }
}

// y[n, c, oy, ox] = act(bias[c] + sum_{ky, kx} w[c, ky, kx] * x[n, c, oy*s + ky*d - pt, ox*s + kx*d - pl])
extern "C" __global__ void mixconv_fwd_f32(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
    float* __restrict__ y, const MixGeom g, const unsigned long long total, const unsigned int act,
    const unsigned int has_bias) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < total;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned int ox = i % g.out_w;
        unsigned long long t = i / g.out_w;
        const unsigned int oy = t % g.out_h;
        t /= g.out_h;
        const unsigned int c = t % g.channels;
        const unsigned long long plane = t;  // n * channels + c
        const unsigned int gi = group_of_channel(g, c);
        const int k = g.kernel[gi];
        const float* wk = w + g.weight_offset[gi] + (unsigned long long)(c - group_start(g, gi)) * k * k;
        const float* xp = x + plane * g.in_h * g.in_w;
        const int iy0 = (int)(oy * g.stride) - (int)g.pad_top[gi];
        const int ix0 = (int)(ox * g.stride) - (int)g.pad_left[gi];
        const int d = g.dilation;
        float acc = has_bias ? bias[c] : 0.0f;
        for (int ky = 0; ky < k; ++ky) {
            const int iy = iy0 + ky * d;
            if (iy < 0 || iy >= (int)g.in_h) continue;
            for (int kx = 0; kx < k; ++kx) {
                const int ix = ix0 + kx * d;
                if (ix < 0 || ix >= (int)g.in_w) continue;
                acc = fmaf(wk[ky * k + kx], xp[(unsigned long long)iy * g.in_w + ix], acc);
            }
        }
        y[i] = activate(acc, act);
    }
}

// dx[n, c, iy, ix] = sum over taps with iy + pt - ky*d = oy*s, ix + pl - kx*d = ox*s in range of
// w[c, ky, kx] * dy[n, c, oy, ox]
extern "C" __global__ void mixconv_grad_input_f32(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx, const MixGeom g,
    const unsigned long long total) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < total;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const int ix = i % g.in_w;
        unsigned long long t = i / g.in_w;
        const int iy = t % g.in_h;
        t /= g.in_h;
        const unsigned int c = t % g.channels;
        const unsigned long long plane = t;
        const unsigned int gi = group_of_channel(g, c);
        const int k = g.kernel[gi];
        const float* wk = w + g.weight_offset[gi] + (unsigned long long)(c - group_start(g, gi)) * k * k;
        const float* gp = dy + plane * g.out_h * g.out_w;
        const int s = g.stride, d = g.dilation;
        float acc = 0.0f;
        for (int ky = 0; ky < k; ++ky) {
            const int ty = iy + (int)g.pad_top[gi] - ky * d;
            if (ty < 0 || ty % s != 0 || ty / s >= (int)g.out_h) continue;
            const int oy = ty / s;
            for (int kx = 0; kx < k; ++kx) {
                const int tx = ix + (int)g.pad_left[gi] - kx * d;
                if (tx < 0 || tx % s != 0 || tx / s >= (int)g.out_w) continue;
                acc = fmaf(wk[ky * k + kx], gp[(unsigned long long)oy * g.out_w + tx / s], acc);
            }
        }
        dx[i] = acc;
    }
}

// dw[c, ky, kx] = sum_{n, oy, ox} dy[n, c, oy, ox] * x[n, c, oy*s + ky*d - pt, ox*s + kx*d - pl]:
// one block per packed weight, reduced over the batch and the plane in shared memory (no atomics,
// so the result is deterministic).
#define GRAD_WEIGHT_THREADS 256
extern "C" __global__ void mixconv_grad_weight_f32(
    const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dw, const MixGeom g,
    const unsigned int batch) {
    __shared__ float partial[GRAD_WEIGHT_THREADS];
    const unsigned int wi = blockIdx.x;
    unsigned int gi = 0;
    while (gi + 1 < g.n_groups && wi >= g.weight_offset[gi + 1]) ++gi;
    const int k = g.kernel[gi];
    const unsigned int local = wi - g.weight_offset[gi];
    const unsigned int c = group_start(g, gi) + local / (k * k);
    const int ky = (local % (k * k)) / k, kx = local % k;
    const int s = g.stride, d = g.dilation;
    const int oy_off = ky * d - (int)g.pad_top[gi], ox_off = kx * d - (int)g.pad_left[gi];
    const unsigned long long plane_out = (unsigned long long)g.out_h * g.out_w;
    const unsigned long long count = plane_out * batch;
    float acc = 0.0f;
    for (unsigned long long j = threadIdx.x; j < count; j += blockDim.x) {
        const unsigned long long n = j / plane_out;
        const unsigned int p = j % plane_out;
        const int oy = p / g.out_w, ox = p % g.out_w;
        const int iy = oy * s + oy_off, ix = ox * s + ox_off;
        if (iy < 0 || iy >= (int)g.in_h || ix < 0 || ix >= (int)g.in_w) continue;
        const unsigned long long plane = n * g.channels + c;
        acc = fmaf(dy[plane * plane_out + p], x[(plane * g.in_h + iy) * g.in_w + ix], acc);
    }
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) dw[wi] = partial[0];
}
