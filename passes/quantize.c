/* quantize.c - the `quantize` pass: the storage format of weight matrices, named by
 * the policy's `quantize weights F [group G] [layers a..b] [except NAME, ...]`
 * statements (or by `elide compile --quantize=F`, which adds one statement for the
 * whole model), and for q8/q4 the activations of the linears that read them
 * (`activations int8|f32`, int8 when not given).  Formats and their arithmetic:
 * ir/quant.c, docs/quantization.md.
 *   1. eligible params: loaded matrices whose every use, in every entry, is the
 *      weight of a linear or the table of an embed (norm weights, biases and
 *      anything read elementwise keep f32);
 *   2. each statement, in order, gives its format (and activations: int8 for q8/q4
 *      unless it names f32; f32 for bf16 and f32, int8 with those is an error) to
 *      the eligible params it covers
 *      (a later statement overrides an earlier one): those of layers a..b when
 *      `layers` is given (layers counted after drop statements), else all, minus the
 *      `except` names (PolicyQuantize.except, a list); a name is a param's IR name ("wq.3"), its declared name
 *      ("wq": every layer's), or a role: `embed` (embedding tables), `lm_head`
 *      (linear weights outside every layer);
 *   3. quantise each param that got a format (ir_quantize_param: the data becomes the
 *      dequantised values, the codes go to Param.qdata); a param not loaded yet
 *      (`elide opt` of a model without weights) only records the format, and the
 *      weight loader quantises it;
 *   4. record each param's activations (a param already quantised, from the textual
 *      IR, takes a statement's activations too);
 *   5. drop the statements and note in the manifest how many params and elements
 *      each format holds (q8/q4 split by activations).
 * Runs after drops and pruning, so a pruned unit is never quantised, and the groups
 * of a pruned FFN follow its new width. */
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

enum { USE_NONE = 0, USE_LINEAR = 1, USE_EMBED = 2, USE_OTHER = 4, USE_HEAD = 8 };

/* How each param is used, as USE_* bits over every entry. */
static unsigned *
param_uses(const Module *m)
{
	unsigned *u = xcalloc(m->nparams + 1, sizeof *u);
	for (uint32_t fi = 0; fi < m->nfuncs; fi++) {
		const Func *f = m->funcs[fi];
		for (uint32_t i = 0; i < f->nops; i++) {
			const Op *op = &f->ops[i];
			for (uint32_t a = 0; a < op->nargs; a++) {
				const Op *d = &f->ops[f->vals[op->args[a]].def];
				if (d->code != OP_PARAM || d->ia[0] < 0 || d->ia[0] >= m->nparams)
					continue;
				unsigned *pu = &u[d->ia[0]];
				if (op->code == OP_LINEAR && a == 1)
					*pu |= USE_LINEAR | (op->layer < 0 ? USE_HEAD : 0);
				else if (op->code == OP_EMBED && a == 0)
					*pu |= USE_EMBED;
				else
					*pu |= USE_OTHER;
			}
		}
	}
	return u;
}

/* Whether `name` (an except entry) names param p. */
static bool
names_param(const char *name, const Param *p, unsigned use)
{
	if (strcmp(name, "embed") == 0)
		return use & USE_EMBED;
	if (strcmp(name, "lm_head") == 0 && (use & USE_HEAD))
		return true;
	size_t n = strlen(name);
	return strcmp(p->name, name) == 0 || (strncmp(p->name, name, n) == 0 && p->name[n] == '.');
}

static bool
known_name(const Module *m, const char *name, const unsigned *use)
{
	if (strcmp(name, "embed") == 0 || strcmp(name, "lm_head") == 0)
		return true;
	for (uint32_t i = 0; i < m->nparams; i++)
		if (names_param(name, &m->params[i], use[i]))
			return true;
	return false;
}

/* Step 2 for one statement: fmt[i], grp[i] and act[i] of the params it covers. */
static bool
apply_stmt(const Module *m, const PolicyStmt *s, const unsigned *use, int *fmt, int *grp, int *act, Diag *d)
{
	const PolicyQuantize *q = &s->quantize;
	int f = (int)q->format;
	int g = ir_policy_given(s, PK_QUANTIZE_GROUP) ? (int)q->group : 32;
	int a = ir_policy_given(s, PK_QUANTIZE_ACT) ? (int)q->act : (int)ir_actformat_default((QFormat)f);
	if (a < 0 || a >= AF_COUNT || !ir_actformat_fits((QFormat)f, (ActFormat)a)) {
		diag_error(d, s->key_loc[PK_QUANTIZE_ACT], "format '%s' has f32 activations only, saw '%s'",
		           ir_qformat_name((QFormat)f), ir_actformat_name((ActFormat)a));
		return false;
	}
	if ((f == QF_Q8 || f == QF_Q4) && (g < 8 || g > 4096 || g % 8)) {
		diag_error(d, s->key_loc[PK_QUANTIZE_GROUP], "expected a group that is a multiple of 8 in [8, 4096], saw %d",
		           g);
		return false;
	}
	bool has_layers = ir_policy_given(s, PK_QUANTIZE_LAYERS);
	bool ok = true;
	for (uint32_t j = 0; j < q->except.n; j++)
		if (!known_name(m, q->except.names[j], use)) {
			diag_error(d, s->key_loc[PK_QUANTIZE_EXCEPT], "'%s' names no weight of the model", q->except.names[j]);
			ok = false;
		}
	if (!ok)
		return false;
	for (uint32_t i = 0; i < m->nparams; i++) {
		const Param *p = &m->params[i];
		bool eligible = (use[i] & (USE_LINEAR | USE_EMBED)) && !(use[i] & USE_OTHER) && p->type.rank == 2
		                && !p->type.dyn0;
		if (!eligible)
			continue;
		if (has_layers && !ir_policy_layers_has(&q->layers, p->layer))
			continue;
		bool except = false;
		for (uint32_t j = 0; j < q->except.n && !except; j++)
			except = names_param(q->except.names[j], p, use[i]);
		if (except)
			continue;
		fmt[i] = f;
		grp[i] = g;
		act[i] = a;
	}
	return true;
}

bool
pass_quantize(Module *m, Diag *d)
{
	if (!pass_has_stmts(m, POL_QUANTIZE))
		return true;
	Policy *p = m->policy;
	unsigned *use = param_uses(m);
	int *fmt = xcalloc(m->nparams + 1, sizeof *fmt), *grp = xcalloc(m->nparams + 1, sizeof *grp);
	int *act = xcalloc(m->nparams + 1, sizeof *act);
	for (uint32_t i = 0; i < m->nparams; i++) {
		fmt[i] = m->params[i].format;
		act[i] = m->params[i].act;
	}
	bool ok = true;
	for (uint32_t i = 0; i < p->nstmts && ok; i++)
		if (p->stmts[i].verb == POL_QUANTIZE)
			ok = apply_stmt(m, &p->stmts[i], use, fmt, grp, act, d);
	/* counts per format, q8 and q4 split by activations: [format][act] */
	int64_t count[QF_COUNT][AF_COUNT] = { { 0 } }, elems[QF_COUNT][AF_COUNT] = { { 0 } };
	for (uint32_t i = 0; i < m->nparams && ok; i++) {
		Param *pm = &m->params[i];
		if (fmt[i] != (int)pm->format) {
			char err[256];
			if (pm->format != QF_F32) {
				diag_error(d, pm->loc, "param '%s' is already stored as %s", pm->name, ir_qformat_name(pm->format));
				ok = false;
				break;
			}
			if (!pm->data) { /* not loaded: the format is declared, the loader quantises */
				pm->format = (QFormat)fmt[i];
				pm->group = fmt[i] == QF_BF16 ? 0 : grp[i];
			} else if (!ir_quantize_param(pm, (QFormat)fmt[i], grp[i], err, sizeof err)) {
				diag_error(d, pm->loc, "%s", err);
				ok = false;
				break;
			}
		}
		pm->act = (ActFormat)act[i];
		count[pm->format][pm->act]++;
		elems[pm->format][pm->act] += ir_type_numel(pm->type);
	}
	if (ok) {
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);
		if (!f)
			ELIDE_ICE("open_memstream failed");
		fputs("quantize:", f);
		const char *sep = " ";
		for (int q = 0; q < QF_COUNT; q++)
			for (int a = 0; a < AF_COUNT; a++)
				if (count[q][a]) {
					fprintf(f, "%s%s%s %lld params (%lld elements)", sep, ir_qformat_name((QFormat)q),
					        q == QF_Q8 || q == QF_Q4 ? (a == AF_INT8 ? " (int8 activations)" : " (f32 activations)") : "",
					        (long long)count[q][a], (long long)elems[q][a]);
					sep = ", ";
				}
		fputc('\n', f);
		fclose(f);
		pass_add_notes(m, text);
		free(text);
		pass_drop_stmts(m, POL_QUANTIZE);
	}
	free(use);
	free(fmt);
	free(grp);
	free(act);
	return ok;
}

bool
pass_quantize_add_stmt(Module *m, const char *format, int group, int act)
{
	int f = ir_qformat_from_name(format);
	if (f < 0 || ((f == QF_Q8 || f == QF_Q4) && (group < 8 || group > 4096 || group % 8)))
		return false;
	if (act >= AF_COUNT || (act >= 0 && !ir_actformat_fits((QFormat)f, (ActFormat)act)))
		return false;
	if (!m->policy) {
		m->policy = arena_alloc(&m->arena, sizeof *m->policy);
		memset(m->policy, 0, sizeof *m->policy);
	}
	Policy *p = m->policy;
	PolicyStmt *st = arena_alloc(&m->arena, (p->nstmts + 1) * sizeof *st);
	if (p->nstmts)
		memcpy(st, p->stmts, p->nstmts * sizeof *st);
	PolicyStmt *t = &st[p->nstmts];
	if (!ir_policy_init(t, POL_QUANTIZE, "weights", (Loc){ 0 }))
		ELIDE_ICE("quantize statement");
	t->quantize.format = (QFormat)f;
	t->given |= 1ull << PK_QUANTIZE_FORMAT;
	if (f == QF_Q8 || f == QF_Q4) {
		t->quantize.group = group;
		t->given |= 1ull << PK_QUANTIZE_GROUP;
	}
	if (act >= 0) {
		t->quantize.act = (ActFormat)act;
		t->given |= 1ull << PK_QUANTIZE_ACT;
	}
	p->stmts = st;
	p->nstmts++;
	return true;
}

int
pass_quantize_set_act(Module *m, ActFormat act)
{
	int n = 0;
	for (uint32_t i = 0; m->policy && i < m->policy->nstmts; i++) {
		PolicyStmt *s = &m->policy->stmts[i];
		if (s->verb != POL_QUANTIZE || (s->quantize.format != QF_Q8 && s->quantize.format != QF_Q4))
			continue;
		s->quantize.act = act;
		s->given |= 1ull << PK_QUANTIZE_ACT;
		n++;
	}
	for (uint32_t i = 0; i < m->nparams; i++)
		if (m->params[i].format == QF_Q8 || m->params[i].format == QF_Q4) {
			m->params[i].act = act;
			n++;
		}
	return n;
}
