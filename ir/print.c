/* print.c - the textual IR (.eir) printer; docs/ir.md is the specification.
 * The output is canonical: values are renumbered %N by the index of their defining
 * op, numbers are printed in the shortest form that reads back to the same bits, and
 * names that are not plain identifiers are quoted.  The parser (eir_parser.y) reads
 * every field printed here, so print(parse(print(m))) == print(m) byte for byte.
 * Param data is not printed: a param shows its name, type, layer, source tensor and
 * content hash.  Layer regions print as `layer N { ... }` blocks. */
#include "ir/ir.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Attribute names per op come from ops.def (ir_op_attrs); NULL slots are printed
 * generically as iaK / faK when non-zero.  ARG, PARAM and CONST print their
 * ia[0]/fa[0] inline. */


static const char *const kind_names[] = { "step", "prefill", "forward", "fn" }; /* ORDER: FuncKind */

const char *
ir_func_kind_name(FuncKind k)
{
	return (unsigned)k < sizeof kind_names / sizeof kind_names[0] ? kind_names[k] : "?";
}

int
ir_func_kind_from_name(const char *s)
{
	for (unsigned i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++)
		if (strcmp(s, kind_names[i]) == 0)
			return (int)i;
	return -1;
}

/* Whether the text of a number looks like an integer (needs ".0" to read as real). */
static bool
looks_int(const char *s)
{
	for (; *s; s++)
		if (!isdigit((unsigned char)*s) && *s != '-')
			return false;
	return true;
}

char *
ir_fmt_f32(float v, char *buf, size_t n)
{
	for (int prec = 6; prec <= 9; prec++) {
		snprintf(buf, n, "%.*g", prec, (double)v);
		if (isnan(v) || strtof(buf, NULL) == v)
			break;
	}
	if (looks_int(buf))
		strncat(buf, ".0", n - strlen(buf) - 1);
	return buf;
}

char *
ir_fmt_f64(double v, char *buf, size_t n)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, n, "%.*g", prec, v);
		if (isnan(v) || strtod(buf, NULL) == v)
			break;
	}
	if (looks_int(buf))
		strncat(buf, ".0", n - strlen(buf) - 1);
	return buf;
}

/* Whether s can be printed bare after '@' (else it is quoted). */
static bool
plain_name(const char *s)
{
	if (!s || !(isalpha((unsigned char)*s) || *s == '_'))
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.')
			return false;
	return true;
}

static void
print_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", out);
		else if (c == '\t')
			fputs("\\t", out);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\x%02x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

static void
print_sym(FILE *out, const char *s)
{
	fputc('@', out);
	if (plain_name(s))
		fputs(s, out);
	else
		print_string(out, s ? s : "");
}

static void
print_type(FILE *out, Type t)
{
	char buf[128];
	fputs(ir_type_str(t, buf, sizeof buf), out);
}

/* ---- module header ---- */

static void
print_header(FILE *out, const Module *m)
{
	fputs("module ", out);
	print_sym(out, m->name);
	fprintf(out, " {\n  layers = %d;\n", m->nlayers);
	for (uint32_t i = 0; i < m->config.n; i++) {
		fputs("  const ", out);
		print_sym(out, m->config.names[i]);
		fprintf(out, " = %lld;\n", (long long)m->config.values[i]);
	}
	if (m->weights_path) {
		fputs("  weights = ", out);
		print_string(out, m->weights_path);
		fputs(";\n", out);
	}
	if (m->manifest_notes) {
		fputs("  notes = ", out);
		print_string(out, m->manifest_notes);
		fputs(";\n", out);
	}
	for (uint32_t i = 0; i < m->nparams; i++) {
		const Param *p = &m->params[i];
		fputs("  param ", out);
		print_sym(out, p->name);
		fputs(" : ", out);
		print_type(out, p->type);
		if (p->layer >= 0)
			fprintf(out, " layer %d", p->layer);
		if (p->source) {
			fputs(" = ", out);
			print_string(out, p->source);
		}
		if (p->hash)
			fprintf(out, " hash 0x%016llx", (unsigned long long)p->hash);
		if (p->format != QF_F32)
			fprintf(out, " format %s", ir_qformat_name(p->format));
		if (p->format == QF_Q8 || p->format == QF_Q4)
			fprintf(out, " group %d activations %s", p->group, ir_actformat_name(p->act));
		fputs(";\n", out);
	}
	for (uint32_t i = 0; i < m->nstates; i++) {
		const State *s = &m->states[i];
		fputs("  state ", out);
		print_sym(out, s->name);
		fprintf(out, " : kvcache(ctx = %lld, kv_heads = %lld, head_dim = %lld", (long long)s->ctx,
		        (long long)s->kv_heads, (long long)s->head_dim);
		if (s->page > 0)
			fprintf(out, ", page = %lld", (long long)s->page);
		fputc(')', out);
		if (s->layer >= 0)
			fprintf(out, " layer %d", s->layer);
		fputs(";\n", out);
	}
	for (uint32_t i = 0; i < m->nknobs; i++) {
		const Knob *k = &m->knobs[i];
		char b1[64], b2[64], b3[64];
		fputs("  knob ", out);
		print_sym(out, k->name);
		fprintf(out, " : %s = %s {min = %s, max = %s};\n", ir_dtype_name(k->dtype), ir_fmt_f64(k->dflt, b1, sizeof b1),
		        ir_fmt_f64(k->lo, b2, sizeof b2), ir_fmt_f64(k->hi, b3, sizeof b3));
	}
	for (uint32_t i = 0; i < m->nstats; i++) {
		fputs("  stat ", out);
		print_sym(out, m->stats[i].name);
		fputs(";\n", out);
	}
	fputs("}\n", out);
}

/* ---- policy ---- */

static void
print_pval(FILE *out, const PolicyVal *v)
{
	char buf[64];
	switch (v->kind) {
	case PV_NUM:
		if (v->is_int)
			fprintf(out, "%lld", (long long)v->num);
		else
			fputs(ir_fmt_f64(v->num, buf, sizeof buf), out);
		break;
	case PV_FRAC:
		fprintf(out, "%lld/%lld", (long long)v->lo, (long long)v->hi);
		break;
	case PV_RANGE:
		fprintf(out, "%lld..%lld", (long long)v->lo, (long long)v->hi);
		break;
	case PV_LIST:
		fputc('[', out);
		for (uint32_t i = 0; i < v->nints; i++)
			fprintf(out, "%s%lld", i ? ", " : "", (long long)v->ints[i]);
		fputc(']', out);
		break;
	case PV_NAMES:
		fputc('[', out);
		for (uint32_t i = 0; i < v->nstrs; i++) {
			if (i)
				fputs(", ", out);
			print_string(out, v->strs[i] ? v->strs[i] : "");
		}
		fputc(']', out);
		break;
	case PV_STRING:
		print_string(out, v->str ? v->str : "");
		break;
	case PV_IDENT:
		fputs(v->str ? v->str : "_", out);
		break;
	}
}

/* `verb [subject](key = value, ...)`: the options given, in policy.def's order. */
static void
print_policy(FILE *out, const Policy *p)
{
	fputs("\npolicy", out);
	if (p->name) {
		fputc(' ', out);
		print_sym(out, p->name);
	}
	fputs(" {\n", out);
	for (uint32_t i = 0; i < p->nstmts; i++) {
		const PolicyStmt *s = &p->stmts[i];
		const char *subj = ir_policy_subject_name(s);
		fprintf(out, "  %s%s%s(", ir_vocab_name(&ir_verb_vocab, s->verb), subj ? " " : "", subj ? subj : "");
		int n = 0;
		for (int k = 0; k < PK_COUNT; k++) {
			if (!ir_policy_given(s, (PolicyKey)k))
				continue;
			PolicyVal v = ir_policy_get(s, (PolicyKey)k);
			fprintf(out, "%s%s = ", n++ ? ", " : "", ir_policy_keys[k].word);
			print_pval(out, &v);
		}
		fputs(");\n", out);
	}
	fputs("}\n", out);
}

/* ---- functions ---- */

static void
print_ref(FILE *out, const Func *f, ValueId v)
{
	if (v < f->nvals && f->vals[v].def < f->nops && f->ops[f->vals[v].def].dst == v)
		fprintf(out, "%%%u", f->vals[v].def);
	else
		fprintf(out, "%%bad%u", v);
}

/* Prints " {k = v, ...}" for the named and the non-zero unnamed attribute slots. */
static void
print_attrs(FILE *out, const Module *m, const Op *op)
{
	const IrAttrSpec *sp = &ir_op_attrs[op->code];
	bool any = false;
	char buf[64];
	for (int k = 0; k < IR_NIA; k++) {
		if ((!sp->ia[k] || (sp->optional >> k & 1)) && op->ia[k] == 0)
			continue;
		fputs(any ? ", " : " {", out);
		any = true;
		if (sp->ia[k])
			fprintf(out, "%s = ", sp->ia[k]);
		else
			fprintf(out, "ia%d = ", k);
		if ((ir_op_is_attention(op->code) || op->code == OP_KV_WRITE) && k == 2 && op->ia[2] >= 0 &&
		    op->ia[2] < m->nstates)
			print_sym(out, m->states[op->ia[2]].name);
		else if (op->code == OP_KNOB_SET && k == 0 && op->ia[0] >= 0 && op->ia[0] < m->nknobs)
			print_sym(out, m->knobs[op->ia[0]].name);
		else if ((op->code == OP_ATTENTION_QUEST || op->code == OP_ATTENTION_BLOCK) && k == 6 && op->ia[6] > 0 &&
		         op->ia[6] <= m->nstats)
			print_sym(out, m->stats[op->ia[6] - 1].name);
		else
			fprintf(out, "%lld", (long long)op->ia[k]);
	}
	for (int k = 0; k < IR_NFA; k++) {
		if ((!sp->fa[k] || (sp->optional >> (IR_NIA + k) & 1)) && op->fa[k] == 0 && !signbit(op->fa[k]))
			continue;
		fputs(any ? ", " : " {", out);
		any = true;
		if (sp->fa[k])
			fprintf(out, "%s = ", sp->fa[k]);
		else
			fprintf(out, "fa%d = ", k);
		fputs(ir_fmt_f32(op->fa[k], buf, sizeof buf), out);
	}
	if (any)
		fputc('}', out);
}

/* Whether an op prints as `%N = ... : type` (else it defines nothing usable). */
static bool
shows_value(Opcode c)
{
	return c != OP_RET && (unsigned)c < OP_COUNT && !(ir_op_flags[c] & OPF_VOID);
}

static void
print_op(FILE *out, const Module *m, const Func *f, uint32_t i, const char *indent, int depth)
{
	const Op *op = &f->ops[i];
	char buf[64];
	Type t = op->dst < f->nvals ? f->vals[op->dst].type : ir_type_scalar(DT_F32);
	fputs(indent, out);
	for (int k = 0; k < depth; k++)
		fputs("  ", out);
	if (shows_value(op->code))
		fprintf(out, "%%%u = ", i);
	fputs((unsigned)op->code < OP_COUNT ? ir_op_names[op->code] : "?", out);
	Op shown = *op; /* slots printed inline are cleared so print_attrs skips them */
	switch (op->code) {
	case OP_ARG:
		fprintf(out, " %lld", (long long)op->ia[0]);
		shown.ia[0] = 0;
		break;
	case OP_PARAM:
		shown.ia[0] = 0;
		fputc(' ', out);
		if (op->ia[0] >= 0 && op->ia[0] < m->nparams)
			print_sym(out, m->params[op->ia[0]].name);
		else
			fprintf(out, "%lld", (long long)op->ia[0]);
		break;
	case OP_KNOB:
	case OP_STAT:
		shown.ia[0] = 0;
		fputc(' ', out);
		if (op->code == OP_KNOB && op->ia[0] >= 0 && op->ia[0] < m->nknobs)
			print_sym(out, m->knobs[op->ia[0]].name);
		else if (op->code == OP_STAT && op->ia[0] >= 0 && op->ia[0] < m->nstats)
			print_sym(out, m->stats[op->ia[0]].name);
		else
			fprintf(out, "%lld", (long long)op->ia[0]);
		break;
	case OP_CONST:
		if (t.dtype == DT_I32) {
			fprintf(out, " %lld", (long long)op->ia[0]);
			shown.ia[0] = 0;
		} else {
			fprintf(out, " %s", ir_fmt_f32(op->fa[0], buf, sizeof buf));
			shown.fa[0] = 0;
		}
		break;
	default:
		if (op->code == OP_RET && op->nargs == 0)
			fputs(" ()", out);
		for (uint32_t a = 0; a < op->nargs; a++) {
			fputs(a ? ", " : " ", out);
			print_ref(out, f, op->args[a]);
		}
	}
	print_attrs(out, m, &shown);
	if (shows_value(op->code)) {
		fputs(" : ", out);
		print_type(out, t);
	}
	fputc('\n', out);
}

static void
print_func(FILE *out, const Module *m, const Func *f)
{
	fprintf(out, "\nentry %s ", ir_func_kind_name(f->kind));
	print_sym(out, f->name);
	fputc('(', out);
	for (uint32_t i = 0; i < f->nargs; i++) {
		fputs(i ? ", " : "", out);
		print_sym(out, f->args[i].name);
		fputs(": ", out);
		print_type(out, f->args[i].type);
	}
	fputs(") -> ", out);
	if (f->nrets != 1)
		fputc('(', out);
	for (uint32_t i = 0; i < f->nrets; i++) {
		fputs(i ? ", " : "", out);
		print_type(out, f->rets[i]);
	}
	if (f->nrets != 1)
		fputc(')', out);
	fputs(" {\n", out);
	int32_t cur = -1;
	int depth = 0;      /* open 'if' regions: their ops are indented one more step */
	int block = 0;      /* depth at which the open layer block was opened */
	for (uint32_t i = 0; i < f->nops; i++) {
		int32_t l = f->ops[i].layer < 0 ? -1 : f->ops[i].layer;
		Opcode c = f->ops[i].code;
		int d = (c == OP_ELSE || c == OP_END) && depth > 0 ? depth - 1 : depth;
		if (l != cur) {
			if (cur >= 0)
				fprintf(out, "%*s}\n", 2 + 2 * block, "");
			if (l >= 0)
				fprintf(out, "%*slayer %d {\n", 2 + 2 * d, "", l);
			cur = l;
			block = d;
		}
		depth = d;
		print_op(out, m, f, i, cur >= 0 ? "    " : "  ", depth);
		if (c == OP_IF || c == OP_ELSE)
			depth++;
	}
	if (cur >= 0)
		fprintf(out, "%*s}\n", 2 + 2 * block, "");
	fputs("}\n", out);
}

void
ir_print_module(FILE *out, const Module *m)
{
	print_header(out, m);
	if (m->policy)
		print_policy(out, m->policy);
	for (uint32_t i = 0; i < m->nfuncs; i++)
		print_func(out, m, m->funcs[i]);
}

char *
ir_print_module_str(const Module *m)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	if (!f)
		ELIDE_ICE("open_memstream failed");
	ir_print_module(f, m);
	fclose(f);
	return buf;
}
