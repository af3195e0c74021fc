/* lower.c - semantic checks of a model and its lowering to the IR.
 * Steps:
 *   1. declare: evaluate constants in order, bind weights (unrolling 'for' loops and
 *      substituting {l} in tensor names), states and fns; duplicates get a note at
 *      the earlier definition;
 *   2. lower each entry: arguments become ARG ops, statements are executed at
 *      compile time (loops unrolled, fn calls inlined), calls become ops built by
 *      lower_ops.c, whose types are checked as they are built;
 *   3. check every policy of the file (policy.c) and attach the one asked for.
 * Layer regions: the outermost 'for' loop of an entry stamps its index on every op of
 * its body, so regions are contiguous and checked to be increasing. */
#include "frontend/frontend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_UNROLL 4096   /* iterations of one loop */
#define MAX_INDEX 65536   /* index of an indexed weight or state */

/* ---- symbols ---- */

MSym *
lw_find(Lower *L, const char *name)
{
	for (uint32_t i = 0; i < L->nsyms; i++)
		if (strcmp(L->syms[i].name, name) == 0)
			return &L->syms[i];
	return NULL;
}

static const char *
sym_what(SymKind k)
{
	switch (k) {
	case SYM_CONST: return "constant";
	case SYM_WEIGHT: return "weight";
	case SYM_STATE: return "state";
	case SYM_FN: return "fn";
	case SYM_ENTRY: return "entry";
	}
	return "name";
}

/* Declares a model-level name; reports a duplicate (with a note) and returns NULL. */
static MSym *
declare(Lower *L, const char *name, SymKind kind, Loc loc, const Ast *decl)
{
	MSym *old = lw_find(L, name);
	if (old) {
		diag_error(L->d, loc, "duplicate definition of '%s'", name);
		diag_note(L->d, old->loc, "previous definition of '%s' (a %s) is here", name, sym_what(old->kind));
		return NULL;
	}
	VEC_PUSH(L->syms, L->nsyms, L->capsyms);
	MSym *s = &L->syms[L->nsyms++];
	*s = (MSym){ .name = name, .kind = kind, .loc = loc, .decl = decl, .param = -1 };
	return s;
}

/* Sets slot idx of an indexed weight or state; false if it was set already. */
static bool
set_slot(MSym *s, int64_t idx, int32_t v)
{
	if (idx >= s->nslots) {
		int64_t n = s->nslots ? s->nslots : 8;
		while (n <= idx)
			n *= 2;
		s->slots = xrealloc(s->slots, (size_t)n * sizeof *s->slots);
		for (int64_t i = s->nslots; i < n; i++)
			s->slots[i] = -1;
		s->nslots = n;
	}
	if (s->slots[idx] >= 0)
		return false;
	s->slots[idx] = v;
	return true;
}

/* ---- locals: values, loop variables and int parameters of the current frame ---- */

LSym *
lw_local(Lower *L, const char *name)
{
	for (uint32_t i = L->nlocals; i-- > L->frame;)
		if (strcmp(L->locals[i].name, name) == 0)
			return &L->locals[i];
	return NULL;
}

static LSym *
push_local(Lower *L, const char *name, Loc loc)
{
	VEC_PUSH(L->locals, L->nlocals, L->caplocals);
	LSym *s = &L->locals[L->nlocals++];
	*s = (LSym){ .name = name, .loc = loc, .v = IR_NO_VALUE };
	return s;
}

/* ---- constant expressions ---- */

bool
lw_eval_num(Lower *L, const Ast *e, Num *out)
{
	if (!e)
		return false;
	if (++L->depth > 400) {
		L->depth--;
		diag_error(L->d, e->loc, "expression nested too deeply");
		return false;
	}
	bool ok = false;
	Num a, b;
	switch (e->kind) {
	case AST_NUM:
		*out = (Num){ e->num, e->is_int };
		ok = true;
		break;
	case AST_IDENT: {
		LSym *ls = lw_local(L, e->name);
		if (ls && ls->is_int) {
			*out = (Num){ (double)ls->iv, true };
			ok = true;
		} else if (ls) {
			diag_error(L->d, e->loc, "'%s' is a tensor, expected a constant", e->name);
		} else {
			MSym *s = lw_find(L, e->name);
			if (s && s->kind == SYM_CONST && s->valid) {
				*out = s->val;
				ok = true;
			} else if (s && s->kind == SYM_CONST) {
				ok = false; /* its definition was reported already */
			} else if (s) {
				diag_error(L->d, e->loc, "'%s' is a %s, expected a constant", e->name, sym_what(s->kind));
			} else {
				diag_error(L->d, e->loc, "unknown name '%s'", e->name);
			}
		}
		break;
	}
	case AST_NEG:
		if ((ok = lw_eval_num(L, e->a, &a))) {
			if (a.is_int && a.v == -9007199254740992.0)
				a.v = -a.v;
			*out = (Num){ -a.v, a.is_int };
		}
		break;
	case AST_BINARY: {
		bool oka = lw_eval_num(L, e->a, &a);
		bool okb = lw_eval_num(L, e->b, &b);
		if (!oka || !okb)
			break;
		char op = e->name[0];
		if (a.is_int && b.is_int) {
			int64_t x = (int64_t)a.v, y = (int64_t)b.v, r = 0;
			bool ovf = false;
			switch (op) {
			case '+': ovf = __builtin_add_overflow(x, y, &r); break;
			case '-': ovf = __builtin_sub_overflow(x, y, &r); break;
			case '*': ovf = __builtin_mul_overflow(x, y, &r); break;
			case '/':
				if (y == 0) {
					diag_error(L->d, e->loc, "division by zero in a constant expression");
					goto done;
				}
				if (x == INT64_MIN && y == -1)
					ovf = true;
				else
					r = x / y;
				break;
			}
			if (ovf || r > (INT64_C(1) << 53) || r < -(INT64_C(1) << 53)) {
				diag_error(L->d, e->loc, "integer overflow in a constant expression");
				break;
			}
			*out = (Num){ (double)r, true };
			ok = true;
		} else {
			double r = 0;
			switch (op) {
			case '+': r = a.v + b.v; break;
			case '-': r = a.v - b.v; break;
			case '*': r = a.v * b.v; break;
			case '/':
				if (b.v == 0) {
					diag_error(L->d, e->loc, "division by zero in a constant expression");
					goto done;
				}
				r = a.v / b.v;
				break;
			}
			if (!isfinite(r)) {
				diag_error(L->d, e->loc, "constant expression overflows");
				break;
			}
			*out = (Num){ r, false };
			ok = true;
		}
		break;
	}
	case AST_CALL:
		diag_error(L->d, e->loc, "call to '%s' in a constant expression", e->name);
		break;
	case AST_INDEX:
		diag_error(L->d, e->loc, "'%s[...]' in a constant expression", e->name);
		break;
	default:
		diag_error(L->d, e->loc, "expected a constant expression");
		break;
	}
done:
	L->depth--;
	return ok;
}

bool
lw_eval_int(Lower *L, const Ast *e, const char *what, int64_t *out)
{
	Num n;
	if (!lw_eval_num(L, e, &n))
		return false;
	if (!n.is_int) {
		diag_error(L->d, e->loc, "%s must be an integer, saw %g", what, n.v);
		return false;
	}
	*out = (int64_t)n.v;
	return true;
}

/* True when e mentions no tensor: it can be evaluated as a constant. */
bool
lw_is_const(Lower *L, const Ast *e)
{
	if (!e)
		return true;
	switch (e->kind) {
	case AST_NUM:
		return true;
	case AST_IDENT: {
		LSym *ls = lw_local(L, e->name);
		if (ls)
			return ls->is_int;
		MSym *s = lw_find(L, e->name);
		return s && s->kind == SYM_CONST;
	}
	case AST_NEG:
		return lw_is_const(L, e->a);
	case AST_BINARY:
		return lw_is_const(L, e->a) && lw_is_const(L, e->b);
	default:
		return false;
	}
}

/* ---- types ---- */

/* Evaluates a written type.  allow_int: the type may be 'int' (fn parameters). */
static bool
eval_type(Lower *L, const Ast *t, Type *out, bool *is_int, bool allow_int)
{
	*out = (Type){ 0 };
	if (is_int)
		*is_int = false;
	if (allow_int && strcmp(t->name, "int") == 0 && !t->kids) {
		*is_int = true;
		return true;
	}
	int dt = ir_dtype_from_name(t->name);
	if (dt < 0) {
		diag_error(L->d, t->loc, "unknown type '%s'", t->name);
		return false;
	}
	out->dtype = (DType)dt;
	if (t->nkids > IR_MAX_RANK) {
		diag_error(L->d, t->loc, "type has %u dimensions, at most %d are supported", t->nkids, IR_MAX_RANK);
		return false;
	}
	bool ok = true;
	int i = 0;
	for (const Ast *d = t->kids; d; d = d->next, i++) {
		int64_t v;
		if (!lw_eval_int(L, d->a, "a dimension", &v)) {
			ok = false;
			continue;
		}
		if (v <= 0 || v > (INT64_C(1) << 31)) {
			diag_error(L->d, d->a->loc, "dimension must be in 1..2^31, saw %lld", (long long)v);
			ok = false;
		}
		if (d->name) {
			if (i != 0) {
				diag_error(L->d, d->loc, "only the first dimension may be a bound '<=N'");
				ok = false;
			}
			out->dyn0 = true;
		}
		out->dims[i] = v;
	}
	out->rank = (uint8_t)t->nkids;
	return ok;
}

const char *
lw_tstr(Lower *L, Type t)
{
	char buf[96];
	return arena_strdup(&L->scratch, ir_type_str(t, buf, sizeof buf));
}

/* ---- step 1: declarations ---- */

static void decl_weights(Lower *L, const Ast *list, const char *loopvar);

/* Expands {name} in a tensor name with loop variables and integer constants. */
static const char *
expand_name(Lower *L, const Ast *str)
{
	const char *s = str->name;
	size_t n = strlen(s);
	char *out = arena_alloc(&L->m->arena, n * 4 + 64), *o = out;
	size_t cap = n * 4 + 63;
	bool ok = true;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '{') {
			if (s[i] == '}') {
				Loc loc = str->loc;
				loc.col += (int)i + 1;
				loc.end_col = loc.col + 1;
				diag_error(L->d, loc, "unmatched '}' in a weight name");
				ok = false;
			}
			if ((size_t)(o - out) < cap)
				*o++ = s[i];
			continue;
		}
		const char *close = strchr(s + i, '}');
		Loc loc = str->loc;
		loc.col += (int)i + 1;
		loc.end_col = close ? loc.col + (int)(close - (s + i)) + 1 : 0;
		if (!close) {
			diag_error(L->d, loc, "unterminated '{' in a weight name");
			return NULL;
		}
		char name[64];
		size_t len = (size_t)(close - (s + i + 1));
		snprintf(name, sizeof name, "%.*s", (int)(len < 63 ? len : 63), s + i + 1);
		LSym *ls = lw_local(L, name);
		MSym *ms = lw_find(L, name);
		long long v = 0;
		if (ls && ls->is_int) {
			v = (long long)ls->iv;
		} else if (ms && ms->kind == SYM_CONST && ms->valid && ms->val.is_int) {
			v = (long long)ms->val.v;
		} else {
			if (len == 0)
				diag_error(L->d, loc, "empty '{}' in weight name '%s'", s);
			else if (!L->in_loop)
				diag_error(L->d, loc, "weight name pattern '{%s}' does not resolve: not inside a 'for' loop", name);
			else
				diag_error(L->d, loc, "weight name pattern '{%s}' does not resolve: '%s' is not a loop variable or integer constant", name, name);
			ok = false;
		}
		char num[32];
		int k = snprintf(num, sizeof num, "%lld", v);
		for (int j = 0; j < k && (size_t)(o - out) < cap; j++)
			*o++ = num[j];
		i += len + 1;
	}
	*o = '\0';
	if (n == 0) {
		diag_error(L->d, str->loc, "empty weight name");
		ok = false;
	}
	return ok ? out : NULL;
}

/* Runs `body` for each value of a 'for' loop in a declaration block. */
static void
decl_for(Lower *L, const Ast *f, void (*body)(Lower *, const Ast *, const char *))
{
	int64_t lo, hi;
	bool oklo = lw_eval_int(L, f->a, "a loop bound", &lo);
	bool okhi = lw_eval_int(L, f->b, "a loop bound", &hi);
	if (!oklo || !okhi)
		return;
	if (hi - lo > MAX_UNROLL || lo < 0) {
		diag_error(L->d, f->loc, "loop range %lld..%lld is not in 0..%d iterations", (long long)lo,
		           (long long)hi, MAX_UNROLL);
		return;
	}
	if (lw_local(L, f->name) || lw_find(L, f->name)) {
		diag_error(L->d, f->loc, "loop variable '%s' shadows an existing name", f->name);
		return;
	}
	bool was = L->in_loop;
	L->in_loop = true;
	for (int64_t i = lo; i < hi && !diag_too_many(L->d); i++) {
		int before = L->d->nerrors;
		LSym *ls = push_local(L, f->name, f->loc);
		ls->is_int = true;
		ls->iv = i;
		body(L, f, f->name);
		L->nlocals--;
		if (L->d->nerrors != before)
			break; /* the same mistake in every iteration: say it once */
	}
	L->in_loop = was;
}

static void
decl_weights_for(Lower *L, const Ast *f, const char *var)
{
	decl_weights(L, f, var);
}

/* Evaluates the index of `name[idx]` in a declaration. */
static bool
decl_index(Lower *L, const Ast *idx, int64_t *out)
{
	if (!lw_eval_int(L, idx, "an index", out))
		return false;
	if (*out < 0 || *out >= MAX_INDEX) {
		diag_error(L->d, idx->loc, "index %lld is out of range 0..%d", (long long)*out, MAX_INDEX - 1);
		return false;
	}
	return true;
}

/* Finds or declares the model symbol of an indexed or plain declaration, checking
 * that every declaration of one name agrees on being indexed. */
static MSym *
decl_sym(Lower *L, const Ast *w, SymKind kind)
{
	MSym *s = lw_find(L, w->name);
	if (s && s->kind == kind && s->indexed && w->a)
		return s;
	if (s) {
		diag_error(L->d, w->loc, "duplicate definition of '%s'", w->name);
		diag_note(L->d, s->loc, "previous definition of '%s' (a %s) is here", w->name, sym_what(s->kind));
		return NULL;
	}
	s = declare(L, w->name, kind, w->loc, w);
	if (s)
		s->indexed = w->a != NULL;
	return s;
}

static void
decl_weight(Lower *L, const Ast *w)
{
	Type t;
	bool ok = eval_type(L, w->b, &t, NULL, false);
	if (ok && (t.dtype == DT_I32 || t.dtype == DT_I8)) {
		diag_error(L->d, w->b->loc, "weights must be f32, bf16 or f16, saw '%s'", ir_dtype_name(t.dtype));
		ok = false;
	}
	if (ok && t.dyn0) {
		diag_error(L->d, w->b->loc, "a weight cannot have a bounded dimension");
		ok = false;
	}
	t.dtype = DT_F32; /* the loader converts bf16 and f16 to f32 */
	int64_t idx = -1;
	if (w->a && !decl_index(L, w->a, &idx))
		return;
	const char *src = expand_name(L, w->c);
	MSym *s = decl_sym(L, w, SYM_WEIGHT);
	if (!s)
		return;
	if (!ok || !src) {
		s->bad = true; /* reported: uses of it stay quiet */
		return;
	}
	if (!w->a) {
		s->param = (int32_t)ir_add_param(L->m, w->name, src, t, -1, w->loc);
		return;
	}
	char pname[160];
	snprintf(pname, sizeof pname, "%s.%lld", w->name, (long long)idx);
	if (s->nslots > idx && s->slots[idx] >= 0) {
		diag_error(L->d, w->loc, "duplicate definition of '%s[%lld]'", w->name, (long long)idx);
		diag_note(L->d, L->m->params[s->slots[idx]].loc, "previous definition is here");
		return;
	}
	set_slot(s, idx, (int32_t)ir_add_param(L->m, pname, src, t, (int32_t)idx, w->loc));
}

static void
decl_weights(Lower *L, const Ast *list, const char *loopvar)
{
	for (const Ast *w = list->kids; w && !diag_too_many(L->d); w = w->next) {
		if (w->kind == AST_FOR)
			decl_for(L, w, decl_weights_for);
		else if (w->kind == AST_WEIGHT)
			decl_weight(L, w);
	}
}

static void decl_states(Lower *L, const Ast *list, const char *loopvar);

static void
decl_state(Lower *L, const Ast *st)
{
	const Ast *call = st->c;
	static const char *const what[3] = { "ctx", "kv_heads", "head_dim" };
	int64_t v[3] = { 0 };
	bool ok = true;
	if (strcmp(call->name, "kvcache") != 0) {
		diag_error(L->d, call->loc, "unknown state kind '%s', expected 'kvcache'", call->name);
		ok = false;
	} else if (call->nkids != 3) {
		diag_error(L->d, call->loc, "'kvcache' takes 3 arguments (ctx, kv_heads, head_dim), got %u", call->nkids);
		ok = false;
	}
	int i = 0;
	for (const Ast *a = call->kids; ok && a; a = a->next, i++) {
		if (a->kind == AST_NAMED) {
			diag_error(L->d, a->loc, "'kvcache' takes positional arguments only");
			ok = false;
		} else if (!lw_eval_int(L, a, what[i], &v[i])) {
			ok = false;
		} else if (v[i] <= 0 || v[i] > (INT64_C(1) << 24)) {
			diag_error(L->d, a->loc, "kvcache %s must be in 1..2^24, saw %lld", what[i], (long long)v[i]);
			ok = false;
		}
	}
	int64_t idx = -1;
	if (st->a && !decl_index(L, st->a, &idx))
		return;
	MSym *s = decl_sym(L, st, SYM_STATE);
	if (!s)
		return;
	if (!ok) {
		s->bad = true;
		return;
	}
	char name[160];
	if (idx >= 0)
		snprintf(name, sizeof name, "%s.%lld", st->name, (long long)idx);
	else
		snprintf(name, sizeof name, "%s", st->name);
	State state = { .name = name, .kind = ST_KVCACHE, .layer = (int32_t)idx, .ctx = v[0],
	                .kv_heads = v[1], .head_dim = v[2], .loc = st->loc };
	if (idx < 0) {
		s->param = (int32_t)ir_add_state(L->m, state);
		return;
	}
	if (s->nslots > idx && s->slots[idx] >= 0) {
		diag_error(L->d, st->loc, "duplicate definition of '%s[%lld]'", st->name, (long long)idx);
		diag_note(L->d, L->m->states[s->slots[idx]].loc, "previous definition is here");
		return;
	}
	set_slot(s, idx, (int32_t)ir_add_state(L->m, state));
}

static void
decl_states_for(Lower *L, const Ast *f, const char *var)
{
	decl_states(L, f, var);
}

static void
decl_states(Lower *L, const Ast *list, const char *loopvar)
{
	for (const Ast *s = list->kids; s && !diag_too_many(L->d); s = s->next) {
		if (s->kind == AST_FOR)
			decl_for(L, s, decl_states_for);
		else if (s->kind == AST_STATE)
			decl_state(L, s);
	}
}

static void
decl_const(Lower *L, const Ast *c)
{
	Num v = { 0 };
	bool ok = lw_eval_num(L, c->a, &v);
	MSym *s = declare(L, c->name, SYM_CONST, c->loc, c);
	if (!s)
		return;
	s->valid = ok;
	s->val = v;
	if (ok && v.is_int) {
		if (L->m->config.n >= sizeof L->m->config.values / sizeof L->m->config.values[0])
			diag_error(L->d, c->loc, "too many integer constants (at most 64)");
		else
			ir_config_set(L->m, c->name, (int64_t)v.v);
	}
}

/* ---- step 2: statements of fns and entries ---- */

static void lower_stmts(Lower *L, const Ast *list);

static void
lower_assign(Lower *L, const Ast *s)
{
	ValueId v = lw_expr(L, s->a);
	LSym *ls = lw_local(L, s->name);
	if (ls && ls->is_int) {
		diag_error(L->d, s->loc, "cannot assign to '%s': it is an integer", s->name);
		return;
	}
	MSym *ms = lw_find(L, s->name);
	if (!ls && ms) {
		diag_error(L->d, s->loc, "'%s' is a %s of the model; choose another name", s->name, sym_what(ms->kind));
		diag_note(L->d, ms->loc, "'%s' is defined here", s->name);
		return;
	}
	if (!ls)
		ls = push_local(L, s->name, s->loc);
	ls->v = v;
	if (v != IR_NO_VALUE && !L->f->vals[v].name)
		L->f->vals[v].name = arena_strdup(&L->m->arena, s->name);
}

static void
lower_for(Lower *L, const Ast *s)
{
	int64_t lo, hi;
	bool oklo = lw_eval_int(L, s->a, "a loop bound", &lo);
	bool okhi = lw_eval_int(L, s->b, "a loop bound", &hi);
	if (!oklo || !okhi)
		return;
	if (hi - lo > MAX_UNROLL || lo < 0) {
		diag_error(L->d, s->loc, "loop range %lld..%lld is not in 0..%d iterations", (long long)lo,
		           (long long)hi, MAX_UNROLL);
		return;
	}
	if (lw_local(L, s->name) || lw_find(L, s->name)) {
		diag_error(L->d, s->loc, "loop variable '%s' shadows an existing name", s->name);
		return;
	}
	bool layer_loop = L->layer < 0;
	if (layer_loop && hi > lo && L->nlayers_decl >= 0 && hi > L->nlayers_decl) {
		diag_error(L->d, s->b->loc, "layer %lld is out of range: the model has %lld layers",
		           (long long)(hi - 1), (long long)L->nlayers_decl);
		return;
	}
	if (layer_loop && hi > lo && lo <= L->last_layer) {
		diag_error(L->d, s->a->loc, "layer regions must come in increasing order: layer %lld after layer %d",
		           (long long)lo, L->last_layer);
		return;
	}
	L->loop_depth++;
	for (int64_t i = lo; i < hi && !L->stop; i++) {
		int before = L->d->nerrors;
		uint32_t mark = L->nlocals;
		LSym *ls = push_local(L, s->name, s->loc);
		ls->is_int = true;
		ls->iv = i;
		if (layer_loop) {
			L->layer = (int32_t)i;
			L->last_layer = (int32_t)i;
		}
		lower_stmts(L, s->c);
		/* values assigned in the body stay visible; only the loop variable goes */
		for (uint32_t k = mark; k + 1 < L->nlocals; k++)
			L->locals[k] = L->locals[k + 1];
		L->nlocals--;
		if (L->d->nerrors != before)
			break;
	}
	if (layer_loop)
		L->layer = -1;
	L->loop_depth--;
}

static void
lower_stmts(Lower *L, const Ast *list)
{
	for (const Ast *s = list ? list->kids : NULL; s && !L->stop; s = s->next) {
		if (diag_too_many(L->d)) {
			L->stop = true;
			return;
		}
		if (L->returned) {
			diag_error(L->d, s->loc, "statement after 'return'");
			return;
		}
		switch (s->kind) {
		case AST_ASSIGN:
			lower_assign(L, s);
			break;
		case AST_FOR:
			lower_for(L, s);
			break;
		case AST_RETURN:
			if (L->loop_depth > 0) {
				diag_error(L->d, s->loc, "'return' inside a 'for' loop");
				break;
			}
			L->ret = lw_expr(L, s->a);
			L->ret_loc = s->a->loc;
			L->returned = true;
			break;
		default:
			break;
		}
	}
}

/* Checks value v against a declared type; `what` names it in the message. */
bool
lw_check_type(Lower *L, ValueId v, Type want, Loc loc, const char *what)
{
	if (v == IR_NO_VALUE)
		return false;
	Type got = ir_vtype(L->f, v);
	if (ir_type_eq(got, want))
		return true;
	diag_error(L->d, loc, "%s has type %s, expected %s", what, lw_tstr(L, got), lw_tstr(L, want));
	return false;
}

ValueId
lw_inline(Lower *L, const Ast *call, const MSym *fn)
{
	const Ast *def = fn->decl;
	for (int i = 0; i < L->ncalls; i++)
		if (L->calls[i] == def) {
			diag_error(L->d, call->loc, "recursive call to '%s'", def->name);
			return IR_NO_VALUE;
		}
	if (L->ncalls == (int)(sizeof L->calls / sizeof L->calls[0])) {
		diag_error(L->d, call->loc, "calls nested too deeply");
		return IR_NO_VALUE;
	}
	if (call->nkids != def->nkids) {
		diag_error(L->d, call->loc, "'%s' takes %u argument%s, got %u", def->name, def->nkids,
		           def->nkids == 1 ? "" : "s", call->nkids);
		diag_note(L->d, def->loc, "'%s' is defined here", def->name);
		return IR_NO_VALUE;
	}
	/* evaluate arguments in the caller's frame */
	uint32_t n = def->nkids;
	LSym *binds = arena_alloc(&L->scratch, (n + 1) * sizeof *binds);
	bool ok = true;
	const Ast *pa = def->kids, *ca = call->kids;
	for (uint32_t i = 0; i < n; i++, pa = pa->next, ca = ca->next) {
		Type t;
		bool is_int;
		if (!eval_type(L, pa->b, &t, &is_int, true)) {
			ok = false;
			continue;
		}
		binds[i] = (LSym){ .name = pa->name, .loc = pa->loc, .is_int = is_int, .v = IR_NO_VALUE };
		const Ast *arg = ca->kind == AST_NAMED ? ca->a : ca;
		if (ca->kind == AST_NAMED && strcmp(ca->name, pa->name) != 0) {
			diag_error(L->d, ca->loc, "argument %u of '%s' is named '%s', not '%s'", i + 1, def->name,
			           pa->name, ca->name);
			ok = false;
			continue;
		}
		if (is_int) {
			ok &= lw_eval_int(L, arg, "an 'int' argument", &binds[i].iv);
			continue;
		}
		binds[i].v = lw_expr(L, arg);
		char what[128];
		snprintf(what, sizeof what, "argument '%s' of '%s'", pa->name, def->name);
		ok &= lw_check_type(L, binds[i].v, t, arg->loc, what);
	}
	Type rt;
	bool rint;
	ok &= eval_type(L, def->b, &rt, &rint, false);
	if (!ok)
		return IR_NO_VALUE;
	/* run the body in a new frame */
	uint32_t saved_frame = L->frame, saved_n = L->nlocals;
	int saved_loops = L->loop_depth;
	bool saved_ret = L->returned;
	ValueId saved_rv = L->ret;
	Loc saved_rl = L->ret_loc;
	L->frame = L->nlocals;
	for (uint32_t i = 0; i < n; i++)
		*push_local(L, binds[i].name, binds[i].loc) = binds[i];
	L->calls[L->ncalls++] = def;
	L->loop_depth = 0;
	L->returned = false;
	L->ret = IR_NO_VALUE;
	int before = L->d->nerrors;
	lower_stmts(L, def->c);
	ValueId rv = L->ret;
	if (!L->returned && L->d->nerrors == before && !L->stop)
		diag_error(L->d, def->loc, "'%s' has no 'return'", def->name);
	else if (L->returned && rv != IR_NO_VALUE) {
		char what[128];
		snprintf(what, sizeof what, "the result of '%s'", def->name);
		if (!lw_check_type(L, rv, rt, L->ret_loc, what))
			rv = IR_NO_VALUE;
	}
	L->ncalls--;
	L->frame = saved_frame;
	L->nlocals = saved_n;
	L->loop_depth = saved_loops;
	L->returned = saved_ret;
	L->ret = saved_rv;
	L->ret_loc = saved_rl;
	return rv;
}

/* The kind of an entry, from its signature. */
static bool
entry_kind(Lower *L, const Ast *e, const Type *ts, FuncKind *kind)
{
	uint32_t n = e->nkids;
	bool tok0 = n >= 1 && ts[0].dtype == DT_I32 && ts[0].rank == 0;
	bool seq0 = n >= 1 && ts[0].dtype == DT_I32 && ts[0].rank == 1 && ts[0].dyn0;
	bool pos1 = n == 2 && ts[1].dtype == DT_I32 && ts[1].rank == 0;
	if (n == 2 && tok0 && pos1)
		*kind = FN_STEP;
	else if (n == 2 && seq0 && pos1)
		*kind = FN_PREFILL;
	else if (n == 1 && seq0)
		*kind = FN_FORWARD;
	else {
		diag_error(L->d, e->loc, "entry '%s' must take (token: i32, pos: i32), (tokens: i32[<=N], pos: i32) "
		           "or (tokens: i32[<=N])", e->name);
		return false;
	}
	return true;
}

static void
lower_entry(Lower *L, const Ast *e)
{
	Type ts[8];
	bool ok = true;
	uint32_t i = 0;
	if (e->nkids > 8) {
		diag_error(L->d, e->loc, "entry '%s' has %u parameters, at most 2 are allowed", e->name, e->nkids);
		return;
	}
	for (const Ast *p = e->kids; p; p = p->next, i++) {
		ok &= eval_type(L, p->b, &ts[i], NULL, false);
		for (const Ast *q = e->kids; q != p; q = q->next)
			if (strcmp(q->name, p->name) == 0) {
				diag_error(L->d, p->loc, "duplicate parameter '%s'", p->name);
				diag_note(L->d, q->loc, "previous definition of '%s' is here", p->name);
				ok = false;
			}
	}
	Type rt;
	ok &= eval_type(L, e->b, &rt, NULL, false);
	FuncKind kind;
	if (!ok || !entry_kind(L, e, ts, &kind))
		return;
	Func *f = ir_new_func(L->m, e->name, kind, e->loc);
	L->f = f;
	i = 0;
	for (const Ast *p = e->kids; p; p = p->next, i++)
		ir_func_add_arg(L->m, f, p->name, ts[i]);
	f->rets = arena_alloc(&L->m->arena, sizeof *f->rets);
	f->rets[0] = rt;
	f->nrets = 1;
	L->frame = L->nlocals = 0;
	L->layer = -1;
	L->last_layer = -1;
	L->loop_depth = 0;
	L->returned = false;
	L->ret = IR_NO_VALUE;
	L->nops_left = 1 << 20;
	i = 0;
	for (const Ast *p = e->kids; p; p = p->next, i++) {
		int64_t ia[4] = { i };
		ValueId v = lw_emit(L, OP_ARG, NULL, 0, ia, NULL, p->loc);
		L->f->vals[v].type = ts[i];
		L->f->vals[v].name = f->args[i].name;
		push_local(L, p->name, p->loc)->v = v;
	}
	int before = L->d->nerrors;
	lower_stmts(L, e->c);
	if (!L->returned) {
		if (L->d->nerrors == before && !L->stop)
			diag_error(L->d, e->loc, "entry '%s' has no 'return'", e->name);
		return;
	}
	if (!lw_check_type(L, L->ret, rt, L->ret_loc, "the returned value"))
		return;
	ValueId r = L->ret;
	ValueId rv = ir_emit(L->m, f, OP_RET, rt, &r, 1, L->ret_loc);
	(void)rv;
}

/* ---- the module ---- */

static int64_t
count_regions(const Module *m)
{
	int64_t n = 0;
	for (uint32_t i = 0; i < m->nfuncs; i++)
		for (uint32_t k = 0; k < m->funcs[i]->nops; k++)
			if (m->funcs[i]->ops[k].layer + 1 > n)
				n = m->funcs[i]->ops[k].layer + 1;
	for (uint32_t i = 0; i < m->nparams; i++)
		if (m->params[i].layer + 1 > n)
			n = m->params[i].layer + 1;
	return n;
}

static Module *
lower_model(const Ast *model, Diag *d)
{
	Lower L = { .d = d, .model = model, .nlayers_decl = -1, .layer = -1 };
	L.m = ir_new_module(model->name);
	/* 1. declarations: constants first, then the rest in order */
	for (const Ast *it = model->kids; it && !diag_too_many(d); it = it->next)
		if (it->kind == AST_LIST)
			for (const Ast *c = it->kids; c; c = c->next)
				decl_const(&L, c);
	MSym *layers = lw_find(&L, "layers");
	if (layers && layers->kind == SYM_CONST && layers->valid && layers->val.is_int) {
		L.nlayers_decl = (int64_t)layers->val.v;
		if (L.nlayers_decl < 0 || L.nlayers_decl > MAX_UNROLL) {
			diag_error(d, layers->loc, "'layers' must be in 0..%d, saw %lld", MAX_UNROLL, (long long)L.nlayers_decl);
			L.nlayers_decl = -1;
		}
	}
	for (const Ast *it = model->kids; it && !diag_too_many(d); it = it->next) {
		switch (it->kind) {
		case AST_WEIGHTS:
			if (strcmp(it->name, "safetensors") != 0)
				diag_error(d, it->loc, "unknown weights format '%s', expected 'safetensors'", it->name);
			decl_weights(&L, it, NULL);
			break;
		case AST_STATES:
			decl_states(&L, it, NULL);
			break;
		case AST_FN:
		case AST_ENTRY:
			declare(&L, it->name, it->kind == AST_FN ? SYM_FN : SYM_ENTRY, it->loc, it);
			break;
		default:
			break;
		}
	}
	/* 2. entries */
	int nentries = 0;
	for (const Ast *it = model->kids; it && !diag_too_many(d); it = it->next)
		if (it->kind == AST_ENTRY) {
			MSym *s = lw_find(&L, it->name);
			if (s && s->decl == it) {
				lower_entry(&L, it);
				nentries++;
			}
		}
	if (nentries == 0 && d->nerrors == 0)
		diag_error(d, model->loc, "model '%s' has no entry", model->name);
	L.m->nlayers = (int32_t)(L.nlayers_decl >= 0 ? L.nlayers_decl : count_regions(L.m));
	for (uint32_t i = 0; i < L.nsyms; i++)
		free(L.syms[i].slots);
	free(L.syms);
	free(L.locals);
	arena_free(&L.scratch);
	return L.m;
}

Module *
fe_lower(const Ast *file, const char *policy, Diag *d)
{
	int before = d->nerrors;
	const Ast *model = NULL;
	for (const Ast *it = file->kids; it; it = it->next)
		if (it->kind == AST_MODEL) {
			if (model) {
				diag_error(d, it->loc, "a file holds one model; '%s' is a second one", it->name);
				diag_note(d, model->loc, "the first model, '%s', is here", model->name);
				continue;
			}
			model = it;
		}
	if (!model) {
		if (d->nerrors == before)
			diag_error(d, file->loc, "no model in the file");
		return NULL;
	}
	Module *m = lower_model(model, d);
	/* 3. policies: all are checked, the one asked for is attached */
	FeModelInfo mi = { .name = model->name, .nlayers = m->nlayers, .model = model };
	const Ast *chosen = NULL;
	for (const Ast *it = file->kids; it && !diag_too_many(d); it = it->next) {
		if (it->kind != AST_POLICY)
			continue;
		const Ast *dup = NULL;
		for (const Ast *q = file->kids; q != it; q = q->next)
			if (q->kind == AST_POLICY && strcmp(q->name, it->name) == 0)
				dup = q;
		if (dup) {
			diag_error(d, it->loc, "duplicate policy '%s'", it->name);
			diag_note(d, dup->loc, "previous definition of '%s' is here", it->name);
			continue;
		}
		if (strcmp(it->name, "dense") == 0) {
			diag_error(d, it->loc, "'dense' is the name of the empty policy; choose another name");
			continue;
		}
		if (strcmp(it->a->name, model->name) != 0) {
			diag_error(d, it->a->loc, "unknown model '%s' in policy '%s'", it->a->name, it->name);
			continue;
		}
		Policy *p = fe_policy_build(&m->arena, it, &mi, d);
		if (p && policy && strcmp(policy, it->name) == 0) {
			m->policy = p;
			chosen = it;
		}
	}
	if (policy && strcmp(policy, "dense") != 0 && !chosen && d->nerrors == before) {
		diag_error(d, (Loc){ 0 }, "unknown policy '%s'", policy);
	}
	if (d->nerrors != before) {
		ir_free_module(m);
		return NULL;
	}
	return m;
}

Module *
fe_load_text(const char *path, const char *text, size_t len, const char *policy, Diag *d)
{
	SourceFile *src = xcalloc(1, sizeof *src);
	char *copy = xmalloc(len + 1);
	memcpy(copy, text, len);
	copy[len] = '\0';
	*src = (SourceFile){ .path = xstrdup(path), .text = copy, .len = len };
	diag_add_source(d, src);
	Arena ar = { 0 };
	int before = d->nerrors;
	Ast *file = ast_parse(&ar, src, d);
	Module *m = d->nerrors == before ? fe_lower(file, policy, d) : NULL;
	arena_free(&ar);
	return m;
}

Module *
fe_load(const char *path, const char *policy, Diag *d)
{
	SourceFile *src = diag_read_file(path);
	if (!src) {
		diag_error(d, (Loc){ 0 }, "cannot read '%s'", path);
		return NULL;
	}
	Module *m = fe_load_text(path, src->text, src->len, policy, d);
	free((char *)src->text);
	free((char *)src->path);
	free(src);
	return m;
}
