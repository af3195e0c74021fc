/* prune_calib.c - calibration for the activation-dependent pruning scores.
 *   1. read the tokens the policy names: a text of decimal ids, or raw bytes;
 *   2. run one entry of the module through the reference interpreter (a prefill or
 *      forward entry in chunks of its sequence bound, each from position 0 with
 *      fresh caches; a step entry token by token), with an op hook that
 *   3. accumulates, per watched op, the sum over tokens of the squared value of each
 *      column (the input-feature norms of the Wanda-like score), and copies the
 *      hidden states at the layer boundaries (for angular distance and block
 *      influence; every token's state is kept, not only the last one). */
#include "passes/prune.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool
prune_read_tokens(const char *path, int64_t max, int32_t **out, int64_t *n, char *err, size_t nerr)
{
	FILE *fp = file_fopen_read(path);
	if (!fp) {
		snprintf(err, nerr, "cannot read calibration file '%s': %s", path, strerror(errno));
		return false;
	}
	size_t len = 0, cap = 1 << 12;
	unsigned char *t = xmalloc(cap);
	bool big = false;
	for (size_t got; (got = fread(t + len, 1, cap - len, fp)) > 0;) {
		len += got;
		if (len > DIAG_MAX_SOURCE) { /* a device such as /dev/zero never ends */
			big = true;
			break;
		}
		if (len == cap)
			t = xrealloc(t, cap *= 2);
	}
	bool rerr = ferror(fp);
	fclose(fp);
	if (big || rerr) {
		free(t);
		if (big)
			snprintf(err, nerr, "cannot read calibration file '%s': larger than the 64 MiB limit", path);
		else
			snprintf(err, nerr, "cannot read calibration file '%s': %s", path, strerror(errno ? errno : EIO));
		return false;
	}
	bool ids = len > 0;
	for (size_t i = 0; i < len && ids; i++)
		ids = isdigit(t[i]) || isspace(t[i]) || t[i] == ',';
	int32_t *tok = xmalloc((len + 1) * sizeof *tok);
	int64_t k = 0;
	if (ids) {
		for (size_t i = 0; i < len && k < max;) {
			if (!isdigit(t[i])) {
				i++;
				continue;
			}
			int64_t v = 0;
			for (; i < len && isdigit(t[i]); i++)
				v = v < INT32_MAX ? v * 10 + (t[i] - '0') : v;
			tok[k++] = (int32_t)(v > INT32_MAX ? INT32_MAX : v);
		}
	} else {
		for (size_t i = 0; i < len && k < max; i++)
			tok[k++] = t[i];
	}
	free(t);
	if (k == 0) {
		free(tok);
		snprintf(err, nerr, "calibration file '%s' holds no tokens", path);
		return false;
	}
	*out = tok;
	*n = k;
	return true;
}

Func *
prune_calib_entry(const Module *m)
{
	static const FuncKind order[] = { FN_PREFILL, FN_FORWARD, FN_STEP };
	for (size_t k = 0; k < sizeof order / sizeof order[0]; k++)
		for (uint32_t i = 0; i < m->nfuncs; i++)
			if (m->funcs[i]->kind == order[k])
				return m->funcs[i];
	return NULL;
}

static void
hook(void *user, const Func *f, const Op *op, const float *val, int64_t rows, int64_t cols)
{
	PruneCalib *c = user;
	if (f != c->f)
		return;
	uint32_t i = (uint32_t)(op - f->ops);
	if (c->sumsq[i]) {
		if (cols != c->cols[i])
			return;
		for (int64_t r = 0; r < rows; r++)
			for (int64_t j = 0; j < cols; j++)
				c->sumsq[i][j] += (double)val[r * cols + j] * val[r * cols + j];
	}
	for (uint32_t s = 0; s < c->nstates; s++) {
		if (c->state_op[s] != i || cols != c->dim)
			continue;
		/* state s of this chunk: rows [c->rows, c->rows + rows) */
		if (c->rows + rows > c->caprows)
			return;
		memcpy(c->states[s] + c->rows * cols, val, (size_t)(rows * cols) * sizeof *val);
	}
}

bool
prune_calibrate(const Module *m, const Func *f, const int32_t *tok, int64_t n, const bool *watch,
                const uint32_t *state_op, uint32_t nstates, PruneCalib *c, char *err, size_t nerr)
{
	memset(c, 0, sizeof *c);
	c->f = f;
	c->sumsq = xcalloc(f->nops + 1, sizeof *c->sumsq);
	c->cols = xcalloc(f->nops + 1, sizeof *c->cols);
	for (uint32_t i = 0; i < f->nops; i++) {
		if (!watch || !watch[i])
			continue;
		Type t = f->vals[f->ops[i].dst].type;
		c->cols[i] = t.rank ? t.dims[t.rank - 1] : 1;
		c->sumsq[i] = xcalloc((size_t)c->cols[i], sizeof(double));
	}
	c->nstates = nstates;
	if (nstates) {
		Type t = f->vals[f->ops[state_op[0]].dst].type;
		c->dim = t.rank ? t.dims[t.rank - 1] : 1;
		c->state_op = xmalloc(nstates * sizeof *c->state_op);
		memcpy(c->state_op, state_op, nstates * sizeof *state_op);
		c->states = xcalloc(nstates, sizeof *c->states);
		c->caprows = n;
		for (uint32_t s = 0; s < nstates; s++)
			c->states[s] = xcalloc((size_t)(n * c->dim), sizeof(float));
	}
	InterpState *st = interp_new(m);
	interp_set_op_hook(st, hook, c);
	int64_t outn = f->nrets ? ir_type_numel(f->rets[0]) : 1;
	float *out = xmalloc((size_t)(outn > 0 ? outn : 1) * sizeof *out);
	bool ok = true;
	if (f->kind == FN_STEP) {
		int64_t ctx = 0;
		for (uint32_t s = 0; s < m->nstates; s++)
			ctx = ctx == 0 || m->states[s].ctx < ctx ? m->states[s].ctx : ctx;
		if (ctx <= 0)
			ctx = n;
		for (int64_t i = 0; i < n && ok; i++) {
			if (i % ctx == 0)
				interp_reset(st);
			ok = interp_run(st, f->name, &tok[i], 1, (int32_t)(i % ctx), out, err, nerr);
			c->rows++;
		}
	} else {
		int64_t bound = f->nargs && f->args[0].type.rank ? f->args[0].type.dims[0] : n;
		for (uint32_t a = 0; a < f->nargs; a++)
			if (f->args[a].type.rank >= 1 && f->args[a].type.dyn0)
				bound = f->args[a].type.dims[0];
		if (bound <= 0)
			bound = n;
		for (int64_t i = 0; i < n && ok; i += bound) {
			int64_t len = n - i < bound ? n - i : bound;
			interp_reset(st);
			ok = interp_run(st, f->name, &tok[i], len, 0, out, err, nerr);
			c->rows += len;
		}
	}
	free(out);
	interp_free(st);
	return ok;
}

double *
prune_calib_norms(const PruneCalib *c, uint32_t op)
{
	if (!c->sumsq || !c->sumsq[op])
		return NULL;
	double *n = xmalloc((size_t)c->cols[op] * sizeof *n);
	for (int64_t j = 0; j < c->cols[op]; j++)
		n[j] = sqrt(c->sumsq[op][j]);
	return n;
}

void
prune_calib_free(PruneCalib *c)
{
	if (c->sumsq)
		for (uint32_t i = 0; i < c->f->nops; i++)
			free(c->sumsq[i]);
	free(c->sumsq);
	free(c->cols);
	for (uint32_t s = 0; s < c->nstates; s++)
		free(c->states[s]);
	free(c->states);
	free(c->state_op);
	memset(c, 0, sizeof *c);
}
