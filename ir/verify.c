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
 *   5. returns: one 'ret' at the top level, last, and any number inside regions,
 *      each the last op of its branch, all matching the entry's declared result types;
 *   6. policy (typed when it was read): layer ranges and lists inside the model, a
 *      kept fraction in (0, 1];
 *   7. control flow (region.c's matching): if/else/end nest, a use sees only values
 *      of its own or an enclosing open branch, a phi's operands come from the branch
 *      each stands for, an exit site's first branch ends in 'ret' (the head's output);
 *      entries with regions may repeat layers (variants, exit tails), so check 3 is
 *      made only on entries without them. */
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
	StrMap names = { 0 };
	for (uint32_t i = 0; i < m->nparams; i++) {
		const Param *p = &m->params[i];
		if (!ir_type_valid(p->type) || p->type.dyn0)
			err(v, p->loc, "param '%s': expected a static tensor type, saw %s", p->name,
			    ir_type_str(p->type, buf, sizeof buf));
		if (p->layer < -1 || (nl > 0 && p->layer >= nl))
			err(v, p->loc, "param '%s': layer %d is outside the model's %lld layers", p->name, p->layer,
			    (long long)nl);
		if (p->name && !strmap_add(&names, p->name, i))
			err(v, p->loc, "param '%s' is defined twice", p->name);
		bool grouped = p->format == QF_Q8 || p->format == QF_Q4;
		if (p->format != QF_F32 && (p->type.rank != 2 || p->format >= QF_COUNT))
			err(v, p->loc, "param '%s': only a matrix can be stored as %s", p->name, ir_qformat_name(p->format));
		else if (grouped && (p->group < 8 || p->group > 4096 || p->group % 8))
			err(v, p->loc, "param '%s': group %d is not a multiple of 8 in [8, 4096]", p->name, p->group);
		else if (p->act >= AF_COUNT || !ir_actformat_fits(p->format, p->act))
			err(v, p->loc, "param '%s': %s weights cannot have %s activations", p->name, ir_qformat_name(p->format),
			    ir_actformat_name(p->act));
		else if (p->format != QF_F32 && p->data && !p->qdata)
			err(v, p->loc, "param '%s' is loaded but not quantised to %s", p->name, ir_qformat_name(p->format));
	}
	for (uint32_t i = 0; i < m->nstates; i++) {
		const State *s = &m->states[i];
		if (s->kind != ST_KVCACHE || s->ctx <= 0 || s->kv_heads <= 0 || s->head_dim <= 0 || s->page < 0)
			err(v, s->loc, "state '%s': expected a kv cache of positive sizes", s->name);
		if (s->layer < -1 || (nl > 0 && s->layer >= nl))
			err(v, s->loc, "state '%s': layer %d is outside the model's %lld layers", s->name, s->layer,
			    (long long)nl);
	}
	strmap_clear(&names);
	for (uint32_t i = 0; i < m->nfuncs; i++)
		if (!strmap_add(&names, m->funcs[i]->name, i))
			err(v, m->funcs[i]->loc, "entry '%s' is defined twice", m->funcs[i]->name);
	strmap_free(&names);
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
	if (op->code == OP_ATTENTION_QUEST && s->page <= 0)
		err(v, op->loc, "attention_quest: expected state '%s' to keep page bounds (page > 0)", s->name);
	if (op->code == OP_ATTENTION_QUEST && s->page > 0 && op->ia[3] != 0 && op->ia[3] < s->page)
		err(v, op->loc, "attention_quest: expected a budget of 0 or at least one page (%lld), saw %lld",
		    (long long)s->page, (long long)op->ia[3]);
	if ((op->code == OP_ATTENTION_QUEST || op->code == OP_ATTENTION_BLOCK) &&
	    (op->ia[6] < 0 || op->ia[6] > (int64_t)m->nstats))
		err(v, op->loc, "%s: expected a stat slot (1 to %u, or 0), saw %lld", ir_op_names[op->code], m->nstats,
		    (long long)op->ia[6]);
	Type kt = f->vals[op->args[1]].type;
	if (kt.rank == 2 && !kt.dyn0 && kt.dims[0] > s->ctx)
		err(v, op->loc, "attention: expected at most %lld rows for state '%s', saw %lld", (long long)s->ctx,
		    s->name, (long long)kt.dims[0]);
}

/* ---- 7. control flow ---- */

/* Per op: the op opening its innermost branch ('if' or 'else'), UINT32_MAX at the top
 * level; per opener: the op closing that branch. */
typedef struct Scopes {
	uint32_t *partner, *scope, *closed;
	bool any;            /* the entry has regions */
	bool ok;             /* the regions nest */
} Scopes;

static void
scopes_build(Ver *v, const Func *f, Scopes *sc)
{
	uint32_t n = f->nops + 1;
	sc->partner = xmalloc(n * sizeof *sc->partner);
	sc->scope = xmalloc(n * sizeof *sc->scope);
	sc->closed = xmalloc(n * sizeof *sc->closed);
	char msg[160];
	uint32_t bad = 0;
	sc->ok = ir_match_regions(f, sc->partner, msg, sizeof msg, &bad);
	sc->any = false;
	if (!sc->ok) {
		err(v, f->ops[bad].loc, "%s", msg);
		return;
	}
	uint32_t *stack = xmalloc(n * sizeof *stack), depth = 0;
	for (uint32_t i = 0; i < f->nops; i++) {
		Opcode c = f->ops[i].code;
		sc->closed[i] = UINT32_MAX;
		if (c == OP_ELSE || c == OP_END) {
			sc->closed[stack[--depth]] = i;
			sc->any = true;
		}
		sc->scope[i] = depth ? stack[depth - 1] : UINT32_MAX;
		if (c == OP_IF || c == OP_ELSE)
			stack[depth++] = i;
	}
	free(stack);
}

static void
scopes_free(Scopes *sc)
{
	free(sc->partner);
	free(sc->scope);
	free(sc->closed);
}

/* Whether the value defined by op d is visible at op j: earlier, and its branch still
 * open at j (or closing at j, for the value a branch hands to a phi). */
static bool
visible_at(const Scopes *sc, uint32_t d, uint32_t j)
{
	return d < j && (!sc->ok || sc->scope[d] == UINT32_MAX || sc->closed[sc->scope[d]] >= j);
}

static void
verify_phi(Ver *v, const Func *f, const Scopes *sc, uint32_t i)
{
	const Op *op = &f->ops[i];
	uint32_t open = sc->partner[i], mid = sc->partner[open];
	bool has_else = f->ops[mid].code == OP_ELSE;
	uint32_t d0 = f->vals[op->args[0]].def, d1 = f->vals[op->args[1]].def;
	if (!visible_at(sc, d0, mid))
		err(v, op->loc, "phi: operand 0 (%%%u) is not defined on the first branch of the 'if' at op %u", d0, open);
	if (!visible_at(sc, d1, has_else ? sc->partner[mid] : open))
		err(v, op->loc, "phi: operand 1 (%%%u) is not defined on the %s of the 'if' at op %u", d1,
		    has_else ? "'else' branch" : "path that skips the region", open);
}

/* An exit site's first branch returns: its last op is a 'ret' of the entry's result. */
static void
verify_exit_site(Ver *v, const Func *f, const Scopes *sc, uint32_t i)
{
	const Op *op = &f->ops[i];
	uint32_t mid = sc->partner[i];
	if (op->ia[0] > 0 && (mid == i + 1 || f->ops[mid - 1].code != OP_RET))
		err(v, op->loc, "if: exit site %lld of '%s' does not return the head's output: expected its first branch "
		    "to end in 'ret'", (long long)op->ia[0], f->name);
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
	Scopes sc;
	scopes_build(v, f, &sc);
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
		} else if (l != prev && l >= 0 && !sc.any) {
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
			} else if (op->code != OP_PHI && !visible_at(&sc, f->vals[u].def, i)) {
				err(v, op->loc, "%s: operand %u (%%%u) is defined in a branch that does not reach this use", nm, a,
				    f->vals[u].def);
				operands_ok = false;
			} else if (ir_op_flags[f->ops[f->vals[u].def].code] & OPF_VOID) {
				err(v, op->loc, "%s: operand %u is the value of a '%s', which defines none", nm, a,
				    ir_op_names[f->ops[f->vals[u].def].code]);
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
			bool nested = sc.ok && sc.scope[i] != UINT32_MAX;
			nret += !nested;
			if (nested && f->ops[i + 1].code != OP_ELSE && f->ops[i + 1].code != OP_END)
				err(v, op->loc, "ret: expected it to be the last op of its branch");
			else if (!nested && i + 1 != f->nops)
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
		if (ir_op_is_attention(op->code))
			verify_state_use(v, f, op);
		if (op->code == OP_PHI && sc.ok)
			verify_phi(v, f, &sc, i);
		if (op->code == OP_IF && sc.ok)
			verify_exit_site(v, f, &sc, i);
	}
	scopes_free(&sc);
	if (nret == 0 && (uint32_t)v->d->nerrors == nerr_before)
		err(v, f->loc, "entry '%s': expected a 'ret', saw none", f->name);
	else if (nret > 1)
		err(v, f->loc, "entry '%s': expected one 'ret', saw %u", f->name, nret);
	free(seen);
}

/* ---- 6. policy ---- */

/* A layer option of a statement names layers of the model. */
static void
verify_layers_opt(Ver *v, const PolicyStmt *s, PolicyKey k, int64_t nl)
{
	const PolicyLayers *ls = (const PolicyLayers *)((const char *)s + ir_policy_keys[k].offset);
	const char *key = ir_policy_keys[k].word;
	Loc loc = s->key_loc[k];
	if (ls->range) {
		if (ls->lo < 0 || ls->lo >= ls->hi || ls->hi > nl)
			err(v, loc, "policy: expected '%s' inside the model's layers 0..%lld, saw %d..%d", key, (long long)nl,
			    ls->lo, ls->hi);
		return;
	}
	for (uint32_t i = 0; i < ls->n; i++)
		if (ls->list[i] < 0 || ls->list[i] >= nl) {
			err(v, loc, "policy: expected '%s' inside the model's layers 0..%lld, saw layer %d", key, (long long)nl,
			    ls->list[i]);
			break;
		}
}

/* The statements are typed (their words were checked when they were read); what
 * depends on the module is checked here: layer indices inside the model, and a
 * kept fraction in (0, 1]. */
static void
verify_policy(Ver *v)
{
	const Policy *p = v->m->policy;
	if (!p)
		return;
	int64_t nl = model_layers(v->m);
	for (uint32_t i = 0; i < p->nstmts; i++) {
		const PolicyStmt *s = &p->stmts[i];
		if (s->verb == POL_PRUNE && ir_policy_given(s, PK_PRUNE_KEEP)) {
			const PolicyKeep *k = &s->prune.keep;
			if (!(k->value > 0) || (!k->count && k->value > 1))
				err(v, s->key_loc[PK_PRUNE_KEEP], "policy: expected 'keep' in (0, 1], saw %g", k->value);
		}
		for (int k = 0; nl > 0 && k < PK_COUNT; k++) {
			PolicyKeyKind kind = ir_policy_keys[k].kind;
			if ((kind == PKK_RANGE || kind == PKK_LIST || kind == PKK_LAYERS) && ir_policy_given(s, (PolicyKey)k))
				verify_layers_opt(v, s, (PolicyKey)k, nl);
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
