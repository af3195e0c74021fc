/* eir_build.c - builds a Module from the actions of the .eir parser (eir_parser.y).
 * Every name is checked as it is read: unknown dtypes, ops, params, states and
 * attributes, redefined values and out-of-range integers are reported at their
 * token with "expected X, saw Y" messages, and parsing goes on.  Operand names are
 * resolved when their function ends, so uses before definitions parse (the verifier
 * reports them as dominance errors).  Shapes are taken as written; the verifier
 * checks them against ir_infer_type. */
#include "ir/ir.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define GROW(p, arr, n, cap)                                                                 \
	do {                                                                                 \
		if ((n) >= (cap)) {                                                          \
			uint32_t nc = (cap) ? 2 * (cap) : 8;                                 \
			void *na = arena_alloc(&(p)->m->arena, nc * sizeof *(arr));          \
			if (n)                                                               \
				memcpy(na, (arr), (n) * sizeof *(arr));                      \
			(arr) = na;                                                          \
			(cap) = nc;                                                          \
		}                                                                            \
	} while (0)

int64_t
eir_int(EirParser *p, const char *text, Loc loc)
{
	errno = 0;
	char *end;
	long long v = strtoll(text, &end, 10);
	if (errno == ERANGE || *end) {
		diag_error(p->diag, loc, "expected a 64-bit integer, saw '%s'", text);
		return 0;
	}
	return v;
}

/* An int that must fit in [lo, hi]. */
static int64_t
int_in(EirParser *p, const char *text, Loc loc, int64_t lo, int64_t hi, const char *what)
{
	int64_t v = eir_int(p, text, loc);
	if (v < lo || v > hi) {
		diag_error(p->diag, loc, "expected %s in %lld..%lld, saw %lld", what, (long long)lo, (long long)hi,
		           (long long)v);
		return lo;
	}
	return v;
}

static bool
is_real_text(const char *t)
{
	return strpbrk(t, ".eEn") != NULL; /* '.', exponent, inf, nan */
}

/* ---- module header ---- */

void
eir_module(EirParser *p, const char *name, Loc loc)
{
	(void)loc;
	p->m->name = name;
}

void
eir_module_layers(EirParser *p, const char *n, Loc loc)
{
	p->m->nlayers = (int32_t)int_in(p, n, loc, 0, 1 << 20, "a layer count");
}

void
eir_module_const(EirParser *p, const char *name, const char *n, Loc loc)
{
	Module *m = p->m;
	for (uint32_t i = 0; i < m->config.n; i++)
		if (strcmp(m->config.names[i], name) == 0) {
			diag_error(p->diag, loc, "constant '%s' is defined twice", name);
			return;
		}
	if (m->config.n == sizeof m->config.values / sizeof m->config.values[0]) {
		diag_error(p->diag, loc, "too many constants: at most %zu", sizeof m->config.values / sizeof m->config.values[0]);
		return;
	}
	ir_config_set(m, name, eir_int(p, n, loc));
}

void
eir_module_string(EirParser *p, const char *key, const char *s, Loc loc)
{
	const char **slot = strcmp(key, "weights") == 0 ? &p->m->weights_path : &p->m->manifest_notes;
	if (*slot)
		diag_error(p->diag, loc, "'%s' is given twice", key);
	*slot = s;
}

void
eir_param(EirParser *p, const char *name, Type t, const char *layer, const char *source, const char *hash, Loc loc)
{
	p->lastparam = -1;
	if (strmap_get(&p->paramidx, name) >= 0) {
		diag_error(p->diag, loc, "param '%s' is defined twice", name);
		return;
	}
	int32_t l = layer ? (int32_t)int_in(p, layer, loc, 0, 1 << 20, "a layer index") : -1;
	uint32_t k = ir_add_param(p->m, name, source, t, l, loc);
	strmap_add(&p->paramidx, p->m->params[k].name, k);
	p->lastparam = (int32_t)k;
	if (hash) {
		errno = 0;
		char *end;
		unsigned long long h = strtoull(hash, &end, 16);
		if (errno == ERANGE || *end)
			diag_error(p->diag, loc, "expected a 64-bit hash, saw '%s'", hash);
		p->m->params[k].hash = h;
	}
}

void
eir_param_format(EirParser *p, const char *kw, const char *fmt, const char *gkw, const char *group,
                 const char *akw, const char *act, Loc loc)
{
	if (strcmp(kw, "format") != 0) {
		diag_error(p->diag, loc, "expected 'format' or ';', saw '%s'", kw);
		return;
	}
	int f = ir_qformat_from_name(fmt);
	if (f < 0) {
		diag_error(p->diag, loc, "expected a format (f32, bf16, q8, q4), saw '%s'", fmt);
		return;
	}
	bool grouped = f == QF_Q8 || f == QF_Q4;
	if (gkw && strcmp(gkw, "group") != 0) {
		diag_error(p->diag, loc, "expected 'group' or ';', saw '%s'", gkw);
		return;
	}
	if (grouped != (gkw != NULL)) {
		diag_error(p->diag, loc, grouped ? "format '%s' needs 'group N'" : "format '%s' takes no group", fmt);
		return;
	}
	int64_t g = gkw ? int_in(p, group, loc, 8, 4096, "a group size") : 0;
	if (gkw && g % 8) {
		diag_error(p->diag, loc, "group %lld is not a multiple of 8", (long long)g);
		return;
	}
	if (akw && strcmp(akw, "activations") != 0) {
		diag_error(p->diag, loc, "expected 'activations' or ';', saw '%s'", akw);
		return;
	}
	/* without 'activations', a q8/q4 param has the default (int8) */
	int a = akw ? ir_actformat_from_name(act) : (int)ir_actformat_default((QFormat)f);
	if (a < 0) {
		diag_error(p->diag, loc, "expected activations 'int8' or 'f32', saw '%s'", act);
		return;
	}
	if (!ir_actformat_fits((QFormat)f, (ActFormat)a)) {
		diag_error(p->diag, loc, "format '%s' has f32 activations only, saw '%s'", fmt, act);
		return;
	}
	if (p->lastparam < 0)
		return;
	Param *pm = &p->m->params[p->lastparam];
	if (f != QF_F32 && (pm->type.rank != 2 || pm->type.dyn0)) {
		diag_error(p->diag, loc, "only a matrix param can be stored as %s", fmt);
		return;
	}
	pm->format = (QFormat)f;
	pm->group = (int32_t)g;
	pm->act = (ActFormat)a;
}

void
eir_state(EirParser *p, const char *name, const char *kind, EirList *attrs, const char *layer, Loc loc)
{
	for (uint32_t i = 0; i < p->m->nstates; i++)
		if (strcmp(p->m->states[i].name, name) == 0) {
			diag_error(p->diag, loc, "state '%s' is defined twice", name);
			return;
		}
	if (strcmp(kind, "kvcache") != 0) {
		diag_error(p->diag, loc, "expected state kind 'kvcache', saw '%s'", kind);
		return;
	}
	State s = { .name = name, .kind = ST_KVCACHE, .layer = -1, .loc = loc };
	int64_t *slots[4] = { &s.ctx, &s.kv_heads, &s.head_dim, &s.page };
	static const char *const keys[4] = { "ctx", "kv_heads", "head_dim", "page" };
	bool seen[4] = { 0 };
	for (uint32_t i = 0; i < attrs->n; i++) {
		int k = 0;
		while (k < 4 && strcmp(attrs->keys[i], keys[k]) != 0)
			k++;
		if (k == 4 || seen[k] || attrs->items[i].kind != EO_INT) {
			diag_error(p->diag, attrs->items[i].loc, "expected 'ctx', 'kv_heads', 'head_dim' or 'page' once each "
			           "with an integer, saw '%s'", attrs->keys[i]);
			return;
		}
		seen[k] = true;
		*slots[k] = int_in(p, attrs->items[i].text, attrs->items[i].loc, 1, INT64_C(1) << 40, keys[k]);
	}
	for (int k = 0; k < 3; k++)
		if (!seen[k]) {
			diag_error(p->diag, loc, "state '%s' needs '%s'", name, keys[k]);
			return;
		}
	if (layer)
		s.layer = (int32_t)int_in(p, layer, loc, 0, 1 << 20, "a layer index");
	ir_add_state(p->m, s);
}

void
eir_knob(EirParser *p, const char *name, const char *dtype, const char *dflt, EirList *attrs, Loc loc)
{
	if (ir_find_knob(p->m, name) >= 0) {
		diag_error(p->diag, loc, "knob '%s' is defined twice", name);
		return;
	}
	int dt = ir_dtype_from_name(dtype);
	if (dt != DT_F32 && dt != DT_I32) {
		diag_error(p->diag, loc, "knob '%s': expected dtype f32 or i32, saw '%s'", name, dtype);
		return;
	}
	Knob k = { .name = name, .dtype = (DType)dt, .dflt = strtod(dflt, NULL), .loc = loc };
	bool seen[2] = { 0 };
	for (uint32_t i = 0; i < attrs->n; i++) {
		int s = strcmp(attrs->keys[i], "min") == 0 ? 0 : strcmp(attrs->keys[i], "max") == 0 ? 1 : -1;
		if (s < 0 || seen[s] || attrs->items[i].kind == EO_SYM) {
			diag_error(p->diag, attrs->items[i].loc, "knob '%s': expected 'min' and 'max' once each, saw '%s'",
			           name, attrs->keys[i]);
			return;
		}
		seen[s] = true;
		*(s ? &k.hi : &k.lo) = strtod(attrs->items[i].text, NULL);
	}
	if (!seen[0] || !seen[1] || !(k.lo <= k.dflt && k.dflt <= k.hi)) {
		diag_error(p->diag, loc, "knob '%s': expected 'min' <= default <= 'max'", name);
		return;
	}
	ir_add_knob(p->m, k);
}

void
eir_stat(EirParser *p, const char *name, Loc loc)
{
	if (ir_find_stat(p->m, name) >= 0) {
		diag_error(p->diag, loc, "stat '%s' is defined twice", name);
		return;
	}
	ir_add_stat(p->m, name, loc);
}

Type
eir_type(EirParser *p, const char *dtype, Loc loc)
{
	int dt = ir_dtype_from_name(dtype);
	if (dt < 0) {
		diag_error(p->diag, loc, "expected a dtype (f32, i32, bf16, f16, i8), saw '%s'", dtype);
		dt = DT_F32;
	}
	return ir_type_scalar((DType)dt);
}

Type
eir_type_dim(EirParser *p, Type t, const char *n, bool bound, Loc loc)
{
	int64_t v = eir_int(p, n, loc);
	if (v < 1 || v > (INT64_C(1) << 40)) {
		diag_error(p->diag, loc, "expected a positive extent, saw %lld", (long long)v);
		v = 1;
	}
	if (t.rank == IR_MAX_RANK) {
		diag_error(p->diag, loc, "expected at most %d dimensions", IR_MAX_RANK);
		return t;
	}
	t.dyn0 = t.dyn0 || bound;
	t.dims[t.rank++] = v;
	return t;
}

/* ---- operand and attribute lists ---- */

EirList *
eir_list(EirParser *p)
{
	return arena_alloc(&p->m->arena, sizeof(EirList));
}

EirList *
eir_list_add(EirParser *p, EirList *l, const char *key, EirOperandKind k, const char *text, Loc loc)
{
	if (l->n >= l->cap) {
		uint32_t nc = l->cap ? 2 * l->cap : 4;
		EirOperand *ni = arena_alloc(&p->m->arena, nc * sizeof *ni);
		const char **nk = arena_alloc(&p->m->arena, nc * sizeof *nk);
		if (l->n) {
			memcpy(ni, l->items, l->n * sizeof *ni);
			memcpy(nk, l->keys, l->n * sizeof *nk);
		}
		l->items = ni;
		l->keys = nk;
		l->cap = nc;
	}
	l->items[l->n] = (EirOperand){ .kind = k, .text = text, .loc = loc };
	l->keys[l->n++] = key;
	return l;
}

/* ---- policy ---- */

void
eir_policy(EirParser *p, const char *name, Loc loc)
{
	if (p->m->policy) {
		diag_error(p->diag, loc, "expected one policy, saw a second");
		return;
	}
	Policy *pol = arena_alloc(&p->m->arena, sizeof *pol);
	pol->name = name;
	pol->loc = loc;
	p->m->policy = pol;
}

/* A statement: the verb and subject from their vocabularies, then every option
 * typed by ir_policy_set (policy.c), then the options the statement cannot lack.
 * Layer indices are the verifier's (they depend on the module). */
void
eir_policy_stmt(EirParser *p, const char *verb, const char *subject, EirOpts *opts, Loc loc)
{
	int v = ir_vocab_find(&ir_verb_vocab, verb);
	if (v < 0) {
		diag_error(p->diag, loc, "policy: expected a verb (prune, skip, exit, attend, drop, quantize), saw '%s'", verb);
		return;
	}
	PolicyStmt s;
	if (!ir_policy_init(&s, (PolicyVerb)v, subject, loc)) {
		if (subject)
			diag_error(p->diag, loc, "policy: '%s' has no subject '%s'", verb, subject);
		else
			diag_error(p->diag, loc, "policy: '%s' needs a subject", verb);
		return;
	}
	bool ok = true;
	for (uint32_t i = 0; i < opts->n; i++) {
		const EirOpt *o = &opts->o[i];
		int k = ir_policy_key(&s, o->key);
		char err[256];
		if (k < 0) {
			diag_error(p->diag, o->loc, "policy: unknown option '%s' for '%s%s%s'", o->key, verb, subject ? " " : "",
			           subject ? subject : "");
			ok = false;
		} else if (!ir_policy_set(&s, (PolicyKey)k, &o->val, o->loc, err, sizeof err)) {
			diag_error(p->diag, o->loc, "policy: %s", err);
			ok = false;
		}
	}
	const char *missing = ok ? ir_policy_missing(&s) : NULL;
	if (missing) {
		diag_error(p->diag, loc, "policy: '%s%s%s' needs '%s'", verb, subject ? " " : "", subject ? subject : "",
		           missing);
		ok = false;
	}
	if (!ok)
		return;
	GROW(p, p->stmts, p->nstmts, p->capstmts);
	p->stmts[p->nstmts++] = s;
}

EirOpts *
eir_opts(EirParser *p)
{
	return arena_alloc(&p->m->arena, sizeof(EirOpts));
}

EirOpts *
eir_opts_add(EirParser *p, EirOpts *o, const char *key, PolicyVal v, Loc loc)
{
	for (uint32_t i = 0; i < o->n; i++)
		if (strcmp(o->o[i].key, key) == 0)
			diag_error(p->diag, loc, "option '%s' is given twice", key);
	GROW(p, o->o, o->n, o->cap);
	o->o[o->n++] = (EirOpt){ .key = key, .val = v, .loc = loc };
	return o;
}

PolicyVal
eir_pv_num(EirParser *p, const char *text, Loc loc)
{
	if (is_real_text(text))
		return (PolicyVal){ .kind = PV_NUM, .num = strtod(text, NULL) };
	int64_t v = int_in(p, text, loc, -(INT64_C(1) << 53), INT64_C(1) << 53, "an integer");
	return (PolicyVal){ .kind = PV_NUM, .num = (double)v, .is_int = true };
}

PolicyVal
eir_pv_frac(EirParser *p, const char *num, const char *den, Loc loc)
{
	int64_t a = eir_int(p, num, loc), b = eir_int(p, den, loc);
	return (PolicyVal){ .kind = PV_FRAC, .num = b > 0 ? (double)a / (double)b : 0, .lo = a, .hi = b };
}

PolicyVal
eir_pv_range(EirParser *p, const char *lo, const char *hi, Loc loc)
{
	return (PolicyVal){ .kind = PV_RANGE, .lo = eir_int(p, lo, loc), .hi = eir_int(p, hi, loc) };
}

PolicyVal
eir_pv_list(EirParser *p, PolicyVal l, const char *n, Loc loc)
{
	if (l.nints == sizeof l.ints / sizeof l.ints[0]) {
		diag_error(p->diag, loc, "expected at most %zu list items", sizeof l.ints / sizeof l.ints[0]);
		return l;
	}
	l.ints[l.nints++] = eir_int(p, n, loc);
	return l;
}

PolicyVal
eir_pv_names(EirParser *p, PolicyVal l, const char *s, Loc loc)
{
	if (l.nstrs == sizeof l.strs / sizeof l.strs[0]) {
		diag_error(p->diag, loc, "expected at most %zu list items", sizeof l.strs / sizeof l.strs[0]);
		return l;
	}
	l.strs[l.nstrs++] = s;
	return l;
}

PolicyVal
eir_pv_word(EirParser *p, PolicyValKind k, const char *s)
{
	(void)p;
	return (PolicyVal){ .kind = k, .str = s };
}

/* ---- functions ---- */

void
eir_func(EirParser *p, const char *kind, const char *name, Loc loc)
{
	int k = ir_func_kind_from_name(kind);
	if (k < 0) {
		diag_error(p->diag, loc, "expected an entry kind (step, prefill, forward), saw '%s'", kind);
		k = FN_STEP;
	}
	if (ir_find_func(p->m, name))
		diag_error(p->diag, loc, "entry '%s' is defined twice", name);
	p->f = ir_new_func(p->m, name, (FuncKind)k, loc);
	p->nrefs = p->ndefs = 0;
	strmap_clear(&p->defidx);
	p->layer = -1;
}

void
eir_func_arg(EirParser *p, const char *name, Type t, Loc loc)
{
	for (uint32_t i = 0; i < p->f->nargs; i++)
		if (strcmp(p->f->args[i].name, name) == 0)
			diag_error(p->diag, loc, "argument '%s' is declared twice", name);
	ir_func_add_arg(p->m, p->f, name, t);
}

void
eir_func_ret(EirParser *p, Type t)
{
	Func *f = p->f;
	Type *r = arena_alloc(&p->m->arena, (f->nrets + 1) * sizeof *r);
	if (f->nrets)
		memcpy(r, f->rets, f->nrets * sizeof *r);
	r[f->nrets++] = t;
	f->rets = r;
}

static int
find_def(const EirParser *p, const char *name)
{
	return (int)strmap_get(&p->defidx, name);
}

void
eir_func_end(EirParser *p)
{
	Func *f = p->f;
	for (uint32_t i = 0; i < p->nrefs; i++) {
		const EirRef *r = &p->refs[i];
		int d = find_def(p, r->name);
		if (d < 0) {
			diag_error(p->diag, r->loc, "use of undefined value '%%%s'", r->name);
			continue;
		}
		if (p->defs[d].v == IR_NO_VALUE)
			continue; /* its definition failed and was reported */
		f->ops[r->op].args[r->slot] = p->defs[d].v;
	}
	for (uint32_t i = 0; i < f->nops; i++) {
		Op *op = &f->ops[i];
		if (op->code == OP_RET && op->nargs > 0 && op->args[0] < f->nvals)
			f->vals[op->dst].type = f->vals[op->args[0]].type;
	}
	p->f = NULL;
}

void
eir_layer(EirParser *p, const char *n, Loc loc)
{
	if (!n) {
		p->layer = -1;
		return;
	}
	p->layer = (int32_t)int_in(p, n, loc, 0, 1 << 20, "a layer index");
}

/* Which attribute slot `key` names for op code c: 0..IR_NIA-1 ia, IR_NIA.. fa, -1 none. */
static int
attr_slot(Opcode c, const char *key)
{
	const IrAttrSpec *sp = &ir_op_attrs[c];
	for (int k = 0; k < IR_NIA; k++)
		if (sp->ia[k] && strcmp(sp->ia[k], key) == 0)
			return k;
	for (int k = 0; k < IR_NFA; k++)
		if (sp->fa[k] && strcmp(sp->fa[k], key) == 0)
			return IR_NIA + k;
	if ((key[0] == 'i' || key[0] == 'f') && key[1] == 'a' && key[2] >= '0' && key[3] == '\0') {
		int k = key[2] - '0';
		if (key[0] == 'i' && k < IR_NIA && !sp->ia[k])
			return k;
		if (key[0] == 'f' && k < IR_NFA && !sp->fa[k])
			return IR_NIA + k;
	}
	return -1;
}

/* Reads the inline operand of arg, param and const into op; false after an error. */
static bool
leaf_operand(EirParser *p, Op *op, const EirList *args, Type t, Loc loc)
{
	const char *nm = ir_op_names[op->code];
	const EirOperand *a = args->n ? &args->items[0] : NULL;
	bool ok = args->n == 1;
	if (ok && op->code == OP_ARG)
		ok = a->kind == EO_INT;
	else if (ok && (op->code == OP_PARAM || op->code == OP_KNOB || op->code == OP_STAT))
		ok = a->kind == EO_INT || a->kind == EO_SYM;
	else if (ok)
		ok = a->kind == EO_INT || (a->kind == EO_FLOAT && t.dtype != DT_I32);
	if (!ok) {
		static const char *const want[OP_COUNT] = { [OP_ARG] = "an argument index", [OP_PARAM] = "a param name",
			                                     [OP_CONST] = "a number of the constant's dtype",
			                                     [OP_KNOB] = "a knob name", [OP_STAT] = "a stat name" };
		diag_error(p->diag, a ? a->loc : loc, "%s: expected %s, saw %s", nm, want[op->code],
		           a ? (a->kind == EO_VALUE ? "a value" : a->text) : "nothing");
		return false;
	}
	if (op->code == OP_PARAM && a->kind == EO_SYM) {
		int32_t k = (int32_t)strmap_get(&p->paramidx, a->text);
		if (k < 0) {
			diag_error(p->diag, a->loc, "param: expected a declared param, saw '@%s'", a->text);
			return false;
		}
		op->ia[0] = k;
	} else if ((op->code == OP_KNOB || op->code == OP_STAT) && a->kind == EO_SYM) {
		int32_t k = op->code == OP_KNOB ? ir_find_knob(p->m, a->text) : ir_find_stat(p->m, a->text);
		if (k < 0) {
			diag_error(p->diag, a->loc, "%s: expected a declared %s, saw '@%s'", nm, nm, a->text);
			return false;
		}
		op->ia[0] = k;
	} else if (op->code == OP_CONST && t.dtype != DT_I32) {
		op->fa[0] = strtof(a->text, NULL);
	} else {
		op->ia[0] = eir_int(p, a->text, a->loc);
	}
	return true;
}

/* Reads `{key = value, ...}` into op's slots; false after an error. */
static bool
read_attrs(EirParser *p, Op *op, const EirList *attrs)
{
	unsigned seen = 0;
	bool ok = true;
	const char *nm = ir_op_names[op->code];
	for (uint32_t i = 0; i < attrs->n; i++) {
		const EirOperand *a = &attrs->items[i];
		int s = attr_slot(op->code, attrs->keys[i]);
		if (s < 0 || (seen >> s & 1)) {
			diag_error(p->diag, a->loc, s < 0 ? "%s: unknown attribute '%s'" : "%s: attribute '%s' is given twice",
			           nm, attrs->keys[i]);
			ok = false;
			continue;
		}
		seen |= 1u << s;
		if (s >= IR_NIA && a->kind != EO_SYM) {
			op->fa[s - IR_NIA] = strtof(a->text, NULL);
		} else if (a->kind == EO_INT) {
			op->ia[s] = eir_int(p, a->text, a->loc);
		} else if (a->kind == EO_SYM && (ir_op_is_attention(op->code) || op->code == OP_KV_WRITE) && s == 2) {
			uint32_t k = 0;
			while (k < p->m->nstates && strcmp(p->m->states[k].name, a->text) != 0)
				k++;
			if (k == p->m->nstates) {
				diag_error(p->diag, a->loc, "%s: expected a declared state, saw '@%s'", nm, a->text);
				ok = false;
			}
			op->ia[2] = k;
		} else if (a->kind == EO_SYM && (op->code == OP_ATTENTION_QUEST || op->code == OP_ATTENTION_BLOCK) && s == 6) {
			int32_t k = ir_find_stat(p->m, a->text);
			if (k < 0) {
				diag_error(p->diag, a->loc, "%s: expected a declared stat, saw '@%s'", nm, a->text);
				ok = false;
			}
			op->ia[6] = k + 1;
		} else if (a->kind == EO_SYM && op->code == OP_KNOB_SET && s == 0) {
			int32_t k = ir_find_knob(p->m, a->text);
			if (k < 0) {
				diag_error(p->diag, a->loc, "%s: expected a declared knob, saw '@%s'", nm, a->text);
				ok = false;
			}
			op->ia[0] = k;
		} else {
			diag_error(p->diag, a->loc, "%s: expected an integer for '%s', saw '%s'", nm, attrs->keys[i], a->text);
			ok = false;
		}
	}
	return ok;
}

/* Defines name as a value that failed to build: its uses are not reported again. */
static void
poison(EirParser *p, const char *name, Loc loc)
{
	if (!name || find_def(p, name) >= 0)
		return;
	GROW(p, p->defs, p->ndefs, p->capdefs);
	strmap_add(&p->defidx, name, p->ndefs);
	p->defs[p->ndefs++] = (EirDef){ .name = name, .v = IR_NO_VALUE, .loc = loc };
}

static void build_op(EirParser *p, const char *dst, Loc dloc, const char *name, Loc loc, EirList *args,
                     EirList *attrs, Type t);

void
eir_op(EirParser *p, const char *dst, Loc dloc, const char *name, Loc loc, EirList *args, EirList *attrs, Type t,
       bool typed)
{
	(void)typed;
	if (dst && find_def(p, dst) >= 0) {
		diag_error(p->diag, dloc, "value '%%%s' is defined twice", dst);
		return;
	}
	int before = p->diag->nerrors;
	build_op(p, dst, dloc, name, loc, args, attrs, t);
	if (p->diag->nerrors != before)
		poison(p, dst, dloc);
}

static void
build_op(EirParser *p, const char *dst, Loc dloc, const char *name, Loc loc, EirList *args, EirList *attrs, Type t)
{
	int code = ir_op_from_name(name);
	if (code < 0) {
		diag_error(p->diag, loc, "expected an op name, saw '%s'", name);
		return;
	}
	bool novalue = code == OP_RET || (ir_op_flags[code] & OPF_VOID);
	if (novalue && dst) {
		diag_error(p->diag, dloc, "expected '%s' on its own, saw it assigned to '%%%s'", name, dst);
		return;
	}
	if (!novalue && !dst) {
		diag_error(p->diag, loc, "%s: expected it assigned to a value ('%%x = %s ...')", name, name);
		return;
	}
	if (ir_op_flags[code] & OPF_VOID)
		t = ir_type_scalar(DT_BOOL);
	bool leaf = code == OP_ARG || code == OP_PARAM || code == OP_CONST || code == OP_KNOB || code == OP_STAT;
	if (!leaf && args->n > IR_MAX_OPERANDS) {
		diag_error(p->diag, loc, "%s: expected at most %d operands, saw %u", name, IR_MAX_OPERANDS, args->n);
		return;
	}
	Op tmp = { .code = (Opcode)code };
	if (leaf && !leaf_operand(p, &tmp, args, t, loc))
		return;
	if (!read_attrs(p, &tmp, attrs))
		return;
	ValueId none[IR_MAX_OPERANDS];
	for (int i = 0; i < IR_MAX_OPERANDS; i++)
		none[i] = IR_NO_VALUE;
	uint32_t nargs = leaf ? 0 : args->n;
	for (uint32_t i = 0; i < nargs; i++)
		if (args->items[i].kind != EO_VALUE) {
			diag_error(p->diag, args->items[i].loc, "%s: expected a value operand, saw '%s'", name,
			           args->items[i].text);
			return;
		}
	ValueId v = ir_emit(p->m, p->f, (Opcode)code, t, none, nargs, loc);
	Op *op = ir_def(p->f, v);
	memcpy(op->ia, tmp.ia, sizeof op->ia);
	memcpy(op->fa, tmp.fa, sizeof op->fa);
	op->layer = p->layer;
	for (uint32_t i = 0; i < nargs; i++) {
		GROW(p, p->refs, p->nrefs, p->caprefs);
		p->refs[p->nrefs++] = (EirRef){ .op = p->f->nops - 1, .slot = i, .name = args->items[i].text,
		                                .loc = args->items[i].loc };
	}
	if (code == OP_ARG && tmp.ia[0] >= 0 && tmp.ia[0] < p->f->nargs)
		p->f->vals[v].name = p->f->args[tmp.ia[0]].name;
	if (dst) {
		GROW(p, p->defs, p->ndefs, p->capdefs);
		strmap_add(&p->defidx, dst, p->ndefs);
		p->defs[p->ndefs++] = (EirDef){ .name = dst, .v = v, .loc = dloc };
	}
}

void
eir_syntax_error(EirParser *p, Loc loc, const char *msg)
{
	const char *un = strstr(msg, "unexpected ");
	if (!un) {
		diag_error(p->diag, loc, "%s", strncmp(msg, "memory exhausted", 16) == 0 ? "nesting too deep" : msg);
		return;
	}
	un += strlen("unexpected ");
	const char *ex = strstr(un, ", expecting ");
	int nun = ex ? (int)(ex - un) : (int)strlen(un);
	char saw[160];
	bool texty = (nun == 10 && strncmp(un, "identifier", 10) == 0) || (nun == 7 && strncmp(un, "integer", 7) == 0) ||
	             (nun == 6 && strncmp(un, "number", 6) == 0) || (nun == 6 && strncmp(un, "symbol", 6) == 0) ||
	             (nun == 10 && strncmp(un, "value name", 10) == 0);
	if (texty && p->last_text)
		snprintf(saw, sizeof saw, "%.*s '%.60s'", nun, un, p->last_text);
	else
		snprintf(saw, sizeof saw, "%.*s", nun, un);
	if (ex)
		diag_error(p->diag, loc, "expected %s, saw %s", ex + strlen(", expecting "), saw);
	else
		diag_error(p->diag, loc, "unexpected %s", saw);
}

Module *
eir_finish(EirParser *p, bool ok)
{
	if (p->m->policy && p->nstmts) {
		p->m->policy->stmts = p->stmts;
		p->m->policy->nstmts = p->nstmts;
	}
	if (!ok) {
		ir_free_module(p->m);
		return NULL;
	}
	return p->m;
}
