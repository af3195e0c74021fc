/* target_tables.c - LLVM's tables of CPUs and features of a target, for checking
 * --cpu and --features before LLVM sees them (LLVM only warns about an unknown name,
 * then may fail deep in code generation) and for `--cpu=help` / `--features=help`.
 * The LLVM C API has no call that lists them, but building a target's subtarget
 * with the CPU "help" prints both tables to stderr, as `llc -mcpu=help` does: the
 * tables are read that way, once per triple, with stderr redirected to a temporary
 * file (LLVMCreateDisasmCPUFeatures builds the subtarget without a target machine). */
#include "codegen/codegen.h"

#include <llvm-c/Disassembler.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct Tables {
	char *triple;
	char **cpus; uint32_t ncpus, capcpus;
	char **feats; char **fhelp; uint32_t nfeats, capfeats, capfhelp;
} Tables;

static Tables cache; /* the last triple asked (a compile asks about one) */

static char *
capture_help(const char *triple)
{
	cg_llvm_init();
	FILE *tmp = tmpfile();
	if (!tmp)
		return NULL;
	fflush(stderr);
	int saved = dup(2);
	if (saved < 0) {
		fclose(tmp);
		return NULL;
	}
	dup2(fileno(tmp), 2);
	LLVMDisasmContextRef dc = LLVMCreateDisasmCPUFeatures(triple, "help", "", NULL, 0, NULL, NULL);
	if (dc)
		LLVMDisasmDispose(dc);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	long n = ftell(tmp);
	char *text = NULL;
	if (n > 0 && fseek(tmp, 0, SEEK_SET) == 0) {
		text = xmalloc((size_t)n + 1);
		size_t k = fread(text, 1, (size_t)n, tmp);
		text[k] = 0;
	}
	fclose(tmp);
	return text;
}

/* Lines "  name   - help" after "Available CPUs" and after "Available features". */
static const Tables *
tables(const char *triple)
{
	if (cache.triple && strcmp(cache.triple, triple) == 0)
		return &cache;
	for (uint32_t i = 0; i < cache.ncpus; i++)
		free(cache.cpus[i]);
	for (uint32_t i = 0; i < cache.nfeats; i++) {
		free(cache.feats[i]);
		free(cache.fhelp[i]);
	}
	free(cache.cpus);
	free(cache.feats);
	free(cache.fhelp);
	free(cache.triple);
	cache = (Tables){ .triple = xstrdup(triple) };
	char *text = capture_help(triple);
	int section = 0; /* 1 CPUs, 2 features */
	for (char *line = text, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		if (strncmp(line, "Available CPUs", 14) == 0)
			section = 1;
		else if (strncmp(line, "Available features", 18) == 0)
			section = 2;
		else if (line[0] == ' ' && section) {
			char *name = line + strspn(line, " "), *end = name + strcspn(name, " ");
			if (end == name)
				continue;
			char *help = strstr(end, " - ");
			*end = 0;
			if (section == 1) {
				VEC_PUSH(cache.cpus, cache.ncpus, cache.capcpus);
				cache.cpus[cache.ncpus++] = xstrdup(name);
			} else {
				VEC_PUSH(cache.feats, cache.nfeats, cache.capfeats);
				VEC_PUSH(cache.fhelp, cache.nfeats, cache.capfhelp);
				cache.fhelp[cache.nfeats] = xstrdup(help ? help + 3 : "");
				cache.feats[cache.nfeats++] = xstrdup(name);
			}
		} else if (line[0] && line[0] != ' ')
			section = line[0] == 'A' ? section : 0;
	}
	free(text);
	return &cache;
}

static bool
in_list(char *const *list, uint32_t n, const char *s, size_t len)
{
	for (uint32_t i = 0; i < n; i++)
		if (strlen(list[i]) == len && strncmp(list[i], s, len) == 0)
			return true;
	return false;
}

static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[64];
	if (lb >= 64)
		return (size_t)-1;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* The closest name of list within a third of its length, or NULL. */
static const char *
closest(char *const *list, uint32_t n, const char *s)
{
	const char *best = NULL;
	size_t bd = strlen(s) / 3 + 1;
	for (uint32_t i = 0; i < n; i++) {
		size_t d = edit_distance(s, list[i]);
		if (d < bd) {
			bd = d;
			best = list[i];
		}
	}
	return best;
}

bool
cg_target_check(const char *triple, const char *cpu, const char *features, char *err, size_t nerr)
{
	const Tables *t = tables(triple);
	if (t->ncpus == 0 && t->nfeats == 0)
		return true; /* a target without tables (none in LLVM 19 we know of): nothing to check */
	if (cpu && *cpu && !in_list(t->cpus, t->ncpus, cpu, strlen(cpu))) {
		const char *c = closest(t->cpus, t->ncpus, cpu);
		snprintf(err, nerr, "unknown CPU '%s' for target '%s'%s%s%s (see --cpu=help)", cpu, triple,
		         c ? "; did you mean '" : "", c ? c : "", c ? "'?" : "");
		return false;
	}
	for (const char *p = features; p && *p;) {
		size_t len = strcspn(p, ",");
		if (len == 0) {
			p++;
			continue;
		}
		if ((p[0] != '+' && p[0] != '-') || len == 1) {
			snprintf(err, nerr, "target feature '%.*s' must start with '+' or '-' (e.g. +avx2)", (int)len, p);
			return false;
		}
		if (!in_list(t->feats, t->nfeats, p + 1, len - 1)) {
			char name[128];
			snprintf(name, sizeof name, "%.*s", (int)(len - 1), p + 1);
			const char *c = closest(t->feats, t->nfeats, name);
			snprintf(err, nerr, "unknown target feature '%s' for target '%s'%s%s%s (see --features=help)", name,
			         triple, c ? "; did you mean '" : "", c ? c : "", c ? "'?" : "");
			return false;
		}
		p += len;
	}
	return true;
}

/* The normalised triple (NULL: the host's), or NULL with a message when LLVM does
 * not know the target or has no CPU table for it. */
static char *
known_triple(const char *triple, char *err, size_t nerr)
{
	cg_llvm_init();
	char *def = LLVMGetDefaultTargetTriple();
	char *norm = LLVMNormalizeTargetTriple(triple && *triple ? triple : def);
	char *s = xstrdup(norm);
	LLVMDisposeMessage(norm);
	LLVMDisposeMessage(def);
	LLVMTargetRef target;
	char *msg = NULL;
	if (LLVMGetTargetFromTriple(s, &target, &msg)) {
		snprintf(err, nerr, "unknown target '%s': %s", s, msg ? msg : "");
		LLVMDisposeMessage(msg);
		free(s);
		return NULL;
	}
	if (tables(s)->ncpus == 0) {
		snprintf(err, nerr, "LLVM has no CPU table for target '%s'", s);
		free(s);
		return NULL;
	}
	return s;
}

bool
cg_target_print_cpus(FILE *out, const char *triple, char *err, size_t nerr)
{
	char *tr = known_triple(triple, err, nerr);
	if (!tr)
		return false;
	const Tables *t = tables(tr);
	char *host = LLVMGetHostCPUName();
	fprintf(out, "CPUs of target %s, for `elide compile --cpu=NAME` (the host is %s).\n", tr, host);
	fprintf(out, "Each CPU with the float vector width elide's kernels use for it (the weight panels\n"
	             "are two vectors wide; a blob packed for one width runs only on that width):\n\n");
	for (uint32_t i = 0; i < t->ncpus; i++) {
		int v = cg_target_vec_width(tr, t->cpus[i], "");
		fprintf(out, "  %-24s %2d floats%s%s\n", t->cpus[i], v, v == 16 ? " (AVX-512)" : v == 8 ? " (AVX2)" : "",
		        strcmp(t->cpus[i], host) == 0 ? "  <- this machine" : "");
	}
	fprintf(out, "\nWithout --cpu, elide compiles for the host's CPU (or 'generic' with --target).\n"
	             "--features=+a,-b adds or removes features on top (--features=help lists them).\n");
	LLVMDisposeMessage(host);
	free(tr);
	return true;
}

bool
cg_target_print_features(FILE *out, const char *triple, char *err, size_t nerr)
{
	char *tr = known_triple(triple, err, nerr);
	if (!tr)
		return false;
	const Tables *t = tables(tr);
	fprintf(out, "Features of target %s, for `elide compile --features=+NAME,-NAME`:\n\n", tr);
	for (uint32_t i = 0; i < t->nfeats; i++)
		fprintf(out, "  %-28s %s\n", t->feats[i], t->fhelp[i]);
	fprintf(out, "\n+NAME enables a feature, -NAME disables it.  avx2 and avx512f change elide's kernel\n"
	             "vector width (8 and 16 floats); the others only what LLVM may use.\n");
	free(tr);
	return true;
}
