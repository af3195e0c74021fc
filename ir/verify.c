/* verify.c - the IR verifier: runs after the front end, the parser and (with
 * --verify-each) every pass, and reports every problem it finds through diag at
 * the location of the offending op, param, state or policy option.
 * Checks, in order:
 *   1. module: params and states have well-formed types, known layers, unique names;
 *   2. per entry: ops are in the table, each defines its own value, operand counts
 *      match ops.def, operands are defined earlier (SSA dominance: one block, so
 *      "earlier in the op array"), result types equal ir_infer_type's;
 *   3. region structure: each layer's ops are one contiguous run, runs increase,
 *      every layer is inside the model;
 *   4. state use: attention's state index names a kv cache whose heads and head size
 *      match q, k and v, of the op's own layer, and never from a 'forward' entry;
 *   5. returns: one 'ret', last, matching the entry's declared result types;
 *   6. policy: known verbs, and layer ranges and lists inside the model. */
#include "ir/ir.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct Ver {
	const Module *m;
	Diag *d;
	bool ok;
} Ver;

static void
err(Ver *v, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
err(Ver *v, Loc loc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_verror(v->d, loc, "error", fmt, ap);
	va_end(ap);
	v->ok = false;
}

/* The number of layers policies and regions are checked against (0: unknown). */
static int64_t
model_layers(const Module *m)
{
	return m->nlayers > 0 ? m->nlayers : ir_config_get(m, "layers", 0);
}

/* ---- 1. module ---- */

static void
verify_module(Ver *v)
{
	const Module *m = v->m;
	int64_t nl = model_layers(m);
	char buf[96];
	for (uint32_t i = 0; i < m->nparams; i++) {
		const Param *p = &m->params[i];
		if (!ir_type_valid(p->type) || p->type.dyn0)
			err(v, p->loc, "param '%s': expected a static tensor type, saw %s", p->name,
			    ir_type_str(p->type, buf, sizeof buf));
		if (p->layer < -1 || (nl > 0 && p->layer >= nl))
			err(v, p->loc, "param '%s': layer %d is outside the model's %lld layers", p->name, p->layer,
			    (long long)nl);
		for (uint32_t k = 0; k < i; k++)
			if (strcmp(m->params[k].name, p->name) == 0)
				err(v, p->loc, "param '%s' is defined twice", p->name);
		bool grouped = p->format == QF_Q8 || p->format == QF_Q4;
		if (p->format != QF_F32 && (p->type.rank != 2 || p->format >= QF_COUNT))
			err(v, p->loc, "param '%s': only a matrix can be stored as %s", p->name, ir_qformat_name(p->format));
		else if (grouped && (p->group < 8 || p->group > 4096 || p->group % 8))
			err(v, p->loc, "param '%s': group %d is not a multiple of 8 in [8, 4096]", p->name, p->group);
		else if (p->format != QF_F32 && p->data && !p->qdata)
			err(v, p->loc, "param '%s' is loaded but not quantised to %s", p->name, ir_qformat_name(p->format));
	}
	for (uint32_t i = 0; i < m->nstates; i++) {
		const State *s = &m->states[i];
		if (s->kind != ST_KVCACHE || s->ctx <= 0 || s->kv_heads <= 0 || s->head_dim <= 0)
			err(v, s->loc, "state '%s': expected a kv cache of positive sizes", s->name);
		if (s->layer < -1 || (nl > 0 && s->layer >= nl))
			err(v, s->loc, "state '%s': layer %d is outside the model's %lld layers", s->name, s->layer,
			    (long long)nl);
	}
	for (uint32_t i = 0; i < m->nfuncs; i++)
		for (uint32_t k = 0; k < i; k++)
			if (strcmp(m->funcs[k]->name, m->funcs[i]->name) == 0)
				err(v, m->funcs[i]->loc, "entry '%s' is defined twice", m->funcs[i]->name);
}

/* ---- 4. state use ---- */

static void
verify_state_use(Ver *v, const Func *f, const Op *op)
{
	int64_t si = op->ia[2];
	if (si < 0)
		return;
	const Module *m = v->m;
	if (si >= m->nstates) {
		err(v, op->loc, "attention: expected a state index below %u, saw %lld", m->nstates, (long long)si);
		return;
	}
	const State *s = &m->states[si];
	if (f->kind == FN_FORWARD)
		err(v, op->loc, "attention: a 'forward' entry has no state, but this op uses '%s'", s->name);
	Type q = f->vals[op->args[0]].type;
	int64_t hd = op->ia[0] > 0 && q.rank ? q.dims[q.rank - 1] / op->ia[0] : 0;
	if (s->kv_heads != op->ia[1] || s->head_dim != hd)
		err(v, op->loc, "attention: expected state '%s' to hold %lld kv heads of %lld, saw %lld heads of %lld",
		    s->name, (long long)op->ia[1], (long long)hd, (long long)s->kv_heads, (long long)s->head_dim);
	if (s->layer >= 0 && op->layer >= 0 && s->layer != op->layer)
		err(v, op->loc, "attention: in layer %d, expected the state of that layer, saw '%s' of layer %d", op->layer,
		    s->name, s->layer);
	Type kt = f->vals[op->args[1]].type;
	if (kt.rank == 2 && !kt.dyn0 && kt.dims[0] > s->ctx)
		err(v, op->loc, "attention: expected at most %lld rows for state '%s', saw %lld", (long long)s->ctx,
		    s->name, (long long)kt.dims[0]);
}

/* ---- 2, 3, 5: one entry ---- */

static void
verify_func(Ver *v, const Func *f)
{
	const Module *m = v->m;
	int64_t nl = model_layers(m);
	char buf[96], buf2[96], msg[512];
	uint32_t nerr_before = (uint32_t)v->d->nerrors;
	for (uint32_t i = 0; i < f->nargs; i++)
		if (!ir_type_valid(f->args[i].type))
			err(v, f->loc, "entry '%s': argument '%s' has a malformed type", f->name, f->args[i].name);
	int32_t prev = -1, maxl = -1;
	int32_t top = 0;
	for (uint32_t i = 0; i < f->nops; i++)
		if (f->ops[i].layer > top)
			top = f->ops[i].layer;
	if (top > (1 << 20))
		top = 1 << 20;
	bool *seen = xcalloc((size_t)top + 1, 1);
	uint32_t nret = 0;
	for (uint32_t i = 0; i < f->nops && !diag_too_many(v->d); i++) {
		const Op *op = &f->ops[i];
		if ((unsigned)op->code >= OP_COUNT) {
			err(v, op->loc, "unknown opcode %d", (int)op->code);
			continue;
		}
		const char *nm = ir_op_names[op->code];
		if (op->dst >= f->nvals || f->vals[op->dst].def != i) {
			err(v, op->loc, "%s: does not define a value of its own", nm);
			continue;
		}
		/* 3. regions */
		int32_t l = op->layer;
		if (l < -1 || l > top || (nl > 0 && l >= nl)) {
			err(v, op->loc, "%s: layer %d is outside the model's %lld layers", nm, l, (long long)nl);
		} else if (l != prev && l >= 0) {
			if (seen[l])
				err(v, op->loc, "layer %d: expected one contiguous region, saw a second", l);
			else if (l < maxl)
				err(v, op->loc, "layer %d: expected layers in increasing order, saw it after layer %d", l, maxl);
			seen[l] = true;
			if (l > maxl)
				maxl = l;
		}
		prev = l;
		/* 2. operands: count, dominance */
		bool operands_ok = true;
		int ar = ir_op_arity[op->code];
		if (ar >= 0 && op->nargs != ar) {
			err(v, op->loc, "%s: expected %d operand%s, saw %u", nm, ar, ar == 1 ? "" : "s", op->nargs);
			continue;
		}
		for (uint32_t a = 0; a < op->nargs; a++) {
			ValueId u = op->args[a];
			if (u >= f->nvals || f->vals[u].def >= f->nops) {
				err(v, op->loc, "%s: operand %u is not a value", nm, a);
				operands_ok = false;
			} else if (f->vals[u].def >= i) {
				err(v, op->loc, "%s: operand %u (%%%u) is used before its definition", nm, a, f->vals[u].def);
				operands_ok = false;
			} else if (f->ops[f->vals[u].def].code == OP_RET) {
				err(v, op->loc, "%s: operand %u is the value of a 'ret'", nm, a);
				operands_ok = false;
			}
		}
		if (!operands_ok)
			continue;
		/* 5. returns */
		if (op->code == OP_RET) {
			nret++;
			if (i + 1 != f->nops)
				err(v, op->loc, "ret: expected it to be the last op of '%s'", f->name);
			if (op->nargs != f->nrets) {
				err(v, op->loc, "ret: expected %u value%s, saw %u", f->nrets, f->nrets == 1 ? "" : "s", op->nargs);
				continue;
			}
			for (uint32_t a = 0; a < op->nargs; a++)
				if (!ir_type_eq(f->vals[op->args[a]].type, f->rets[a]))
					err(v, op->loc, "ret: expected %s, saw %s", ir_type_str(f->rets[a], buf, sizeof buf),
					    ir_type_str(f->vals[op->args[a]].type, buf2, sizeof buf2));
			continue;
		}
		/* 2. types */
		Type t;
		if (!ir_infer_type(m, f, op, &t, msg, sizeof msg)) {
			err(v, op->loc, "%s", msg);
			continue;
		}
		if (!ir_type_eq(t, f->vals[op->dst].type))
			err(v, op->loc, "%s: expected result type %s, saw %s", nm, ir_type_str(t, buf, sizeof buf),
			    ir_type_str(f->vals[op->dst].type, buf2, sizeof buf2));
		if (op->code == OP_ATTENTION)
			verify_state_use(v, f, op);
	}
	if (nret == 0 && (uint32_t)v->d->nerrors == nerr_before)
		err(v, f->loc, "entry '%s': expected a 'ret', saw none", f->name);
	else if (nret > 1)
		err(v, f->loc, "entry '%s': expected one 'ret', saw %u", f->name, nret);
	free(seen);
}

/* ---- 6. policy ---- */

static void
verify_layers_opt(Ver *v, const PolicyOpt *o, int64_t nl)
{
	const PolicyVal *pv = &o->val;
	if (pv->kind == PV_RANGE) {
		if (pv->lo < 0 || pv->lo >= pv->hi || pv->hi > nl)
			err(v, o->loc, "policy: expected '%s' inside the model's layers 0..%lld, saw %lld..%lld", o->key,
			    (long long)nl, (long long)pv->lo, (long long)pv->hi);
	} else if (pv->kind == PV_LIST) {
		for (uint32_t i = 0; i < pv->nints; i++)
			if (pv->ints[i] < 0 || pv->ints[i] >= nl) {
				err(v, o->loc, "policy: expected '%s' inside the model's layers 0..%lld, saw layer %lld", o->key,
				    (long long)nl, (long long)pv->ints[i]);
				break;
			}
	} else if (pv->kind == PV_NUM && pv->is_int && strcmp(o->key, "at") == 0) {
		if (pv->num < 0 || pv->num >= (double)nl)
			err(v, o->loc, "policy: expected '%s' inside the model's layers 0..%lld, saw layer %lld", o->key,
			    (long long)nl, (long long)pv->num);
	}
}

static void
verify_policy(Ver *v)
{
	const Policy *p = v->m->policy;
	if (!p)
		return;
	static const char *const verbs[] = { "prune", "skip", "exit", "attend", "drop", "quantize" };
	static const char *const layer_keys[] = { "layers", "at", "dense_layers", "cold" };
	int64_t nl = model_layers(v->m);
	for (uint32_t i = 0; i < p->nstmts; i++) {
		const PolicyStmt *s = &p->stmts[i];
		bool known = false;
		for (size_t k = 0; k < sizeof verbs / sizeof verbs[0]; k++)
			known = known || (s->verb && strcmp(s->verb, verbs[k]) == 0);
		if (!known)
			err(v, s->loc, "policy: expected a verb (prune, skip, exit, attend, drop, quantize), saw '%s'",
			    s->verb ? s->verb : "");
		for (uint32_t k = 0; k < s->nopts; k++) {
			const PolicyOpt *o = &s->opts[k];
			if (!o->key)
				continue;
			if (strcmp(o->key, "keep") == 0 &&
			    ((o->val.kind == PV_NUM && !o->val.is_int && !(o->val.num > 0 && o->val.num <= 1)) ||
			     (o->val.kind == PV_FRAC && !(o->val.lo > 0 && o->val.lo <= o->val.hi))))
				err(v, o->loc, "policy: expected 'keep' in (0, 1], saw %g", o->val.num);
			for (size_t j = 0; nl > 0 && j < sizeof layer_keys / sizeof layer_keys[0]; j++)
				if (strcmp(o->key, layer_keys[j]) == 0)
					verify_layers_opt(v, o, nl);
		}
	}
}

bool
ir_verify(const Module *m, Diag *d)
{
	Ver v = { .m = m, .d = d, .ok = true };
	verify_module(&v);
	for (uint32_t i = 0; i < m->nfuncs && !diag_too_many(d); i++)
		verify_func(&v, m->funcs[i]);
	verify_policy(&v);
	return v.ok;
}
