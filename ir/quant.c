/* quant.c - the quantised storage formats of params (q8, q4, bf16) and the
 * reference arithmetic of a quantised linear.  Formats, layouts and the rounding of
 * every step are in ir.h and docs/quantization.md; the code generator's kernels
 * compute exactly the integer sums defined here, so the interpreter (which calls
 * ir_quant_row and ir_quant_dot) is the reference for them. */
#include "ir/ir.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const qnames[QF_COUNT] = { "f32", "bf16", "q8", "q4" };

const char *
ir_qformat_name(QFormat f)
{
	return f < QF_COUNT ? qnames[f] : "?";
}

int
ir_qformat_from_name(const char *s)
{
	for (int i = 0; i < QF_COUNT; i++)
		if (strcmp(s, qnames[i]) == 0)
			return i;
	return -1;
}

static const char *const anames[AF_COUNT] = { "f32", "int8" };

const char *
ir_actformat_name(ActFormat a)
{
	return a < AF_COUNT ? anames[a] : "?";
}

int
ir_actformat_from_name(const char *s)
{
	for (int i = 0; s && i < AF_COUNT; i++)
		if (strcmp(s, anames[i]) == 0)
			return i;
	return -1;
}

int
ir_qformat_zero(QFormat f)
{
	return f == QF_Q8 ? 128 : f == QF_Q4 ? 8 : 0;
}

double
ir_qformat_bytes(QFormat f)
{
	switch (f) {
	case QF_F32: return 4.0;
	case QF_BF16: return 2.0;
	case QF_Q8: return 1.0;
	case QF_Q4: return 0.5;
	case QF_COUNT: break;
	}
	return 4.0;
}

static uint32_t
f32_bits(float x)
{
	uint32_t u;
	memcpy(&u, &x, 4);
	return u;
}

static float
bits_f32(uint32_t u)
{
	float x;
	memcpy(&x, &u, 4);
	return x;
}

uint16_t
ir_f32_to_f16(float x)
{
	uint32_t u = f32_bits(x);
	uint32_t sign = (u >> 16) & 0x8000u;
	uint32_t a = u & 0x7fffffffu;
	if (a >= 0x7f800000u) /* inf or nan */
		return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0));
	if (a >= 0x477ff000u) /* rounds to >= 65520: overflow */
		return (uint16_t)(sign | 0x7c00u);
	if (a < 0x38800000u) { /* below the smallest normal f16: subnormal or zero */
		float m = bits_f32(a) * 16777216.0f; /* times 2^24: the subnormal's integer, rounded by the FPU */
		return (uint16_t)(sign | (uint32_t)nearbyintf(m));
	}
	uint32_t mant = a & 0x7fffffu, e = (a >> 23) - 112;
	uint32_t h = (e << 10) | (mant >> 13);
	uint32_t rest = mant & 0x1fffu;
	if (rest > 0x1000u || (rest == 0x1000u && (h & 1)))
		h++;
	return (uint16_t)(sign | h);
}

/* Exact for every f16: a finite one's 15 bits moved into place and scaled by 2^112
 * (the generated code decodes scales the same way; scales are always finite), an
 * infinity or NaN (exponent all ones) as the f32 one with the same sign and payload
 * (the safetensors and GGUF readers meet those). */
float
ir_f16_to_f32(uint16_t h)
{
	if ((h & 0x7c00u) == 0x7c00u)
		return bits_f32((uint32_t)(h & 0x8000u) << 16 | 0x7f800000u | (uint32_t)(h & 0x3ffu) << 13);
	float mag = bits_f32((uint32_t)(h & 0x7fffu) << 13) * 0x1p112f;
	return (h & 0x8000u) ? -mag : mag;
}

uint16_t
ir_f32_to_bf16(float x)
{
	uint32_t u = f32_bits(x);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40u);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

/* bfloat16 rounded outward: toward -inf (up false) or +inf (up true).  bf16 is the top
 * half of an f32, so dropping the low 16 bits rounds toward zero, the right way for
 * one sign; for the other a non-zero low half adds one unit to the magnitude.  A
 * result past the largest finite bf16 (3.3895e38) saturates there, and a NaN gives
 * the widest value (-max for the floor, +max for the ceiling), so a page bound is
 * always finite. */
static uint16_t
bf16_outward(float x, bool up)
{
	uint32_t u = f32_bits(x), h = u >> 16;
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return up ? 0x7f7fu : 0xff7fu;
	bool neg = (u >> 31) != 0;
	if ((u & 0xffffu) && neg != up)
		h++;
	if ((h & 0x7fffu) >= 0x7f80u)
		h = (h & 0x8000u) | 0x7f7fu;
	return (uint16_t)h;
}

uint16_t
ir_bf16_floor(float x)
{
	return bf16_outward(x, false);
}

uint16_t
ir_bf16_ceil(float x)
{
	return bf16_outward(x, true);
}

size_t
ir_quant_bytes(const Param *p)
{
	if (p->format == QF_F32 || p->type.rank != 2)
		return 0;
	int64_t rows = p->type.dims[0], k = p->type.dims[1], n = rows * k;
	if (p->format == QF_BF16)
		return (size_t)(n ? n : 1) * 2;
	return (size_t)((n + 1) & ~(int64_t)1) + (size_t)(rows * ir_quant_groups(k, p->group)) * 2 + 1;
}

const uint8_t *
ir_quant_codes(const Param *p, int64_t n)
{
	return p->qdata + n * p->type.dims[p->type.rank - 1];
}

const uint16_t *
ir_quant_scales(const Param *p, int64_t n)
{
	int64_t k = p->type.dims[p->type.rank - 1], rows = ir_type_numel(p->type) / k;
	const uint16_t *s = (const uint16_t *)(p->qdata + ((rows * k + 1) & ~(int64_t)1));
	return s + n * ir_quant_groups(k, p->group);
}

/* One group of q8/q4: scale bits and codes; the dequantised values into y. */
static uint16_t
quant_group(const float *x, int64_t n, QFormat f, uint8_t *codes, float *y)
{
	int z = ir_qformat_zero(f);
	float m = 0.0f, amax = 0.0f;
	for (int64_t i = 0; i < n; i++)
		if (fabsf(x[i]) > amax) {
			amax = fabsf(x[i]);
			m = x[i];
		}
	float d = f == QF_Q8 ? amax / 127.0f : m / -8.0f;
	uint16_t h = ir_f32_to_f16(d);
	float dq = ir_f16_to_f32(h);
	int lo = f == QF_Q8 ? -127 : -8, hi = f == QF_Q8 ? 127 : 7;
	for (int64_t i = 0; i < n; i++) {
		int q = 0;
		if (dq != 0.0f) {
			float r = nearbyintf(x[i] / dq);
			q = r < (float)lo ? lo : r > (float)hi ? hi : (int)r;
		}
		codes[i] = (uint8_t)(q + z);
		y[i] = dq * (float)q;
	}
	return h;
}

bool
ir_quantize_param(Param *p, QFormat f, int g, char *err, size_t nerr)
{
	if (f == QF_F32)
		return true;
	if (!p->data || p->type.rank != 2 || p->type.dyn0 || p->format != QF_F32) {
		snprintf(err, nerr, "param '%s' is not a loaded f32 matrix", p->name);
		return false;
	}
	if ((f == QF_Q8 || f == QF_Q4) && (g < 8 || g > 4096 || g % 8)) {
		snprintf(err, nerr, "group %d of param '%s' is not a multiple of 8 in [8, 4096]", g, p->name);
		return false;
	}
	int64_t rows = p->type.dims[0], k = p->type.dims[1], n = rows * k;
	for (int64_t i = 0; i < n; i++)
		if (!isfinite(p->data[i]) || fabsf(p->data[i]) > 65504.0f * 8.0f) {
			snprintf(err, nerr, "param '%s' holds %g at element %lld, which %s cannot represent", p->name,
			         (double)p->data[i], (long long)i, ir_qformat_name(f));
			return false;
		}
	uint8_t *q;
	if (f == QF_BF16) {
		uint16_t *b = xmalloc((size_t)(n ? n : 1) * 2);
		for (int64_t i = 0; i < n; i++) {
			b[i] = ir_f32_to_bf16(p->data[i]);
			p->data[i] = ir_bf16_to_f32(b[i]);
		}
		q = (uint8_t *)b;
	} else {
		int64_t ng = ir_quant_groups(k, g);
		size_t codes = (size_t)((n + 1) & ~(int64_t)1);
		p->format = f;
		p->group = g;
		q = xcalloc(ir_quant_bytes(p), 1);
		p->format = QF_F32;
		uint16_t *sc = (uint16_t *)(q + codes);
		for (int64_t r = 0; r < rows; r++)
			for (int64_t j = 0; j < ng; j++) {
				int64_t at = j * g, len = k - at < g ? k - at : g;
				float *x = p->data + r * k + at;
				sc[r * ng + j] = quant_group(x, len, f, q + r * k + at, x);
			}
	}
	free(p->qdata);
	p->qdata = q;
	p->format = f;
	p->group = (f == QF_BF16) ? 0 : g;
	return true;
}

void
ir_quant_row(const float *x, int64_t k, int g, int8_t *codes, float *scales, int32_t *sums)
{
	int64_t ng = ir_quant_groups(k, g);
	for (int64_t j = 0; j < ng; j++) {
		int64_t at = j * g, len = k - at < g ? k - at : g;
		float amax = 0.0f; /* a NaN stays: the scale is NaN and so is every output */
		for (int64_t i = 0; i < len; i++) {
			float a = fabsf(x[at + i]);
			if (isnan(a) || a > amax) /* once NaN, a > amax never holds */
				amax = a;
		}
		float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
		int32_t sum = 0;
		for (int64_t i = 0; i < len; i++) {
			float r = nearbyintf(x[at + i] * inv);
			int q = !(r >= -127.0f) ? -127 : r > 127.0f ? 127 : (int)r; /* NaN: -127, as the kernels */
			codes[at + i] = (int8_t)q;
			sum += q;
		}
		scales[j] = amax / 127.0f;
		sums[j] = sum;
	}
}

float
ir_quant_dot(const Param *p, int64_t n, const int8_t *codes, const float *scales, const int32_t *sums)
{
	int64_t k = p->type.dims[1], ng = ir_quant_groups(k, p->group);
	int z = ir_qformat_zero(p->format);
	const uint8_t *c = ir_quant_codes(p, n);
	const uint16_t *d = ir_quant_scales(p, n);
	float acc = 0.0f;
	for (int64_t j = 0; j < ng; j++) {
		int64_t at = j * p->group, len = k - at < p->group ? k - at : p->group;
		int32_t s = 0;
		for (int64_t i = 0; i < len; i++)
			s += (int32_t)c[at + i] * codes[at + i];
		s -= z * sums[j];
		acc = fmaf((float)s, ir_f16_to_f32(d[j]) * scales[j], acc);
	}
	return acc;
}
