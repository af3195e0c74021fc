/* test_cg_cli.c - `elide compile` and `elide run` end to end.  Seeded random Llamas
 * (MHA and GQA) are written to disk, compiled to an object and a header, linked with
 * cc into tests/e2e/cg_driver.c, and run: 64 decode steps and a prefill match the
 * interpreter (`elide run --interp`; max relative error <= 1e-4, same argmax), 1
 * and 2 threads agree bit for bit, two contexts agree, hostile inputs get status
 * codes, embedded weights work.  Also: the JIT (`elide run`) matches the committed
 * independent reference fixture, --target=aarch64-linux-gnu gives an AArch64 ELF
 * object, and a failed compile leaves no output behind. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/compare.h"
#include "tests/support/randmodel.h"
#include "tests/support/slurp.h"

#define NTOK 64

static char dir[256];

static void
sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
shrc(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
vsh(const char *fmt, va_list ap)
{
	char cmd[8192];
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static void
sh(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = vsh(fmt, ap);
	va_end(ap);
	cr_assert_eq(rc, 0, "command failed (%d): %s", rc, fmt);
}

static int
shrc(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = vsh(fmt, ap);
	va_end(ap);
	return rc;
}

/* rows of vocab floats: max relative error per row and identical argmax */
static void
compare_rows(const char *got_path, const char *ref_path, int vocab, int rows)
{
	size_t n, nr;
	float *got = ts_slurp_floats(got_path, &n), *ref = ts_slurp_floats(ref_path, &nr);
	cr_assert_eq(n, (size_t)(vocab * rows), "%s: %zu floats", got_path, n);
	cr_assert_eq(nr, n);
	for (int t = 0; t < rows; t++) {
		const float *g = got + t * vocab, *r = ref + t * vocab;
		double e = ts_rel_err(g, r, vocab);
		int64_t ag = ts_argmax(g, vocab), ar = ts_argmax(r, vocab);
		cr_assert(e <= 1e-4, "%s row %d: relative error %.3g", got_path, t, e);
		cr_assert_eq(ag, ar, "%s row %d: argmax %lld, interpreter %lld", got_path, t, (long long)ag, (long long)ar);
	}
	free(got);
	free(ref);
}

static bool
same_bytes(const char *a, const char *b)
{
	size_t na, nb;
	float *x = ts_slurp_floats(a, &na), *y = ts_slurp_floats(b, &nb);
	bool same = na == nb && memcmp(x, y, na * sizeof *x) == 0;
	free(x);
	free(y);
	return same;
}

static void
setup(void)
{
	snprintf(dir, sizeof dir, "%s/cg_cli_%d", ELIDE_BINARY_DIR, (int)getpid());
	mkdir(dir, 0777);
}

static void
teardown(void)
{
	shrc("rm -rf '%s'", dir);
}

/* Writes model `tag` (weights + .elide) into dir. */
static void
write_model(const char *tag, RmConfig c)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s.safetensors", dir, tag);
	cr_assert(rm_write_model(&c, p));
	char *src = rm_elide_source(&c, "llama");
	snprintf(p, sizeof p, "%s/%s.elide", dir, tag);
	FILE *f = fopen(p, "w");
	cr_assert(f);
	fputs(src, f);
	fclose(f);
	free(src);
}

static void
compile_and_link(const char *tag, const char *extra)
{
	sh("%s compile %s/%s.elide -w %s/%s.safetensors -o %s/%s.out %s", ELIDE_BIN, dir, tag, dir, tag, dir, tag, extra);
	sh("cc -std=c17 -O1 %s -I%s/%s.out -I%s %s/tests/e2e/cg_driver.c %s/%s.out/llama.o %s/runtime/libelide_rt.a "
	   "-lpthread -lm -o %s/%s.out/driver",
	   ELIDE_DRIVER_CFLAGS, dir, tag, ELIDE_SOURCE_DIR, ELIDE_SOURCE_DIR, dir, tag, ELIDE_BINARY_DIR, dir, tag);
}

static void
model_end_to_end(const char *tag, RmConfig c)
{
	write_model(tag, c);
	compile_and_link(tag, "");
	char toks[NTOK * 8] = "", targs[NTOK * 8] = "";
	for (int i = 0; i < NTOK; i++) {
		int t = (i * 37 + 11) % c.vocab;
		snprintf(toks + strlen(toks), sizeof toks - strlen(toks), "%s%d", i ? "," : "", t);
		snprintf(targs + strlen(targs), sizeof targs - strlen(targs), " %d", t);
	}
	/* reference: the interpreter through the CLI */
	sh("%s run --interp %s/%s.elide -w %s/%s.safetensors --tokens %s --dump-logits %s/%s.ref > /dev/null", ELIDE_BIN,
	   dir, tag, dir, tag, toks, dir, tag);
	sh("%s/%s.out/driver decode %s/%s.out/llama.weights 1 %s/%s.got1 %s", dir, tag, dir, tag, dir, tag, targs);
	sh("%s/%s.out/driver decode %s/%s.out/llama.weights 2 %s/%s.got2 %s", dir, tag, dir, tag, dir, tag, targs);
	char got[512], ref[512], got2[512];
	snprintf(got, sizeof got, "%s/%s.got1", dir, tag);
	snprintf(got2, sizeof got2, "%s/%s.got2", dir, tag);
	snprintf(ref, sizeof ref, "%s/%s.ref", dir, tag);
	compare_rows(got, ref, c.vocab, NTOK);
	cr_assert(same_bytes(got, got2), "1 and 2 threads differ");
	/* prefill of the first 23 tokens */
	char ptoks[256] = "", pargs[256] = "";
	for (int i = 0; i < 23; i++) {
		int t = (i * 37 + 11) % c.vocab;
		snprintf(ptoks + strlen(ptoks), sizeof ptoks - strlen(ptoks), "%s%d", i ? "," : "", t);
		snprintf(pargs + strlen(pargs), sizeof pargs - strlen(pargs), " %d", t);
	}
	sh("%s run --interp --prefill %s/%s.elide -w %s/%s.safetensors --tokens %s --dump-logits %s/%s.pref > /dev/null",
	   ELIDE_BIN, dir, tag, dir, tag, ptoks, dir, tag);
	sh("%s/%s.out/driver prefill %s/%s.out/llama.weights 1 %s/%s.pgot1 %s", dir, tag, dir, tag, dir, tag, pargs);
	sh("%s/%s.out/driver prefill %s/%s.out/llama.weights 2 %s/%s.pgot2 %s", dir, tag, dir, tag, dir, tag, pargs);
	snprintf(got, sizeof got, "%s/%s.pgot1", dir, tag);
	snprintf(got2, sizeof got2, "%s/%s.pgot2", dir, tag);
	snprintf(ref, sizeof ref, "%s/%s.pref", dir, tag);
	compare_rows(got, ref, c.vocab, 1);
	cr_assert(same_bytes(got, got2), "prefill: 1 and 2 threads differ");
	sh("%s/%s.out/driver twoctx %s/%s.out/llama.weights", dir, tag, dir, tag);
}

Test(cg_cli, gqa_model_linked_with_cc, .init = setup, .fini = teardown)
{
	model_end_to_end("gqa", rm_default_config());
}

Test(cg_cli, mha_model_linked_with_cc, .init = setup, .fini = teardown)
{
	RmConfig c = rm_default_config();
	c.kv_heads = c.heads;
	c.seed = 11;
	model_end_to_end("mha", c);
}

Test(cg_cli, hostile_inputs_and_embedded_weights, .init = setup, .fini = teardown)
{
	RmConfig c = rm_default_config();
	c.seed = 12;
	write_model("m", c);
	compile_and_link("m", "");
	RmConfig o = c;
	o.dim = 32;
	o.seed = 13;
	write_model("other", o);
	sh("%s compile %s/other.elide -w %s/other.safetensors -o %s/other.out", ELIDE_BIN, dir, dir, dir);
	sh("%s/m.out/driver hostile %s/m.out/llama.weights %s/other.out/llama.weights", dir, dir, dir);
	sh("%s/m.out/driver truncate %s/m.out/llama.weights", dir, dir);
	sh("%s/m.out/driver threads %s/m.out/llama.weights", dir, dir);
	/* the same model with its blob in the object: identical logits */
	sh("%s/m.out/driver decode %s/m.out/llama.weights 1 %s/m.file 3 9 27", dir, dir, dir);
	compile_and_link("m", "--embed-weights --emit=obj,header");
	char p[512];
	snprintf(p, sizeof p, "%s/m.out/llama.json", dir);
	cr_assert(access(p, R_OK) == 0);
	sh("%s/m.out/driver decode - 1 %s/m.emb 3 9 27", dir, dir);
	char a[512], b[512];
	snprintf(a, sizeof a, "%s/m.file", dir);
	snprintf(b, sizeof b, "%s/m.emb", dir);
	cr_assert(same_bytes(a, b), "embedded weights give other logits");
}

Test(cg_cli, aarch64_object, .init = setup, .fini = teardown)
{
	write_model("a", rm_default_config());
	sh("%s compile %s/a.elide -w %s/a.safetensors -o %s/a.out --target=aarch64-linux-gnu --emit=obj,asm,llvm-ir,header",
	   ELIDE_BIN, dir, dir, dir);
	const char *exts[] = { "o", "s", "ll", "h", "weights", "json" };
	for (int i = 0; i < 6; i++) {
		char p[512];
		snprintf(p, sizeof p, "%s/a.out/llama.%s", dir, exts[i]);
		cr_assert(access(p, R_OK) == 0, "missing %s", p);
	}
	char p[512];
	snprintf(p, sizeof p, "%s/a.out/llama.o", dir);
	FILE *f = fopen(p, "rb");
	unsigned char h[20];
	cr_assert(f && fread(h, 1, 20, f) == 20);
	fclose(f);
	cr_assert(memcmp(h, "\x7f" "ELF", 4) == 0, "not an ELF file");
	cr_assert_eq(h[4], 2, "not ELF64");
	cr_assert_eq(h[18] | (h[19] << 8), 183, "e_machine %d is not EM_AARCH64", h[18] | (h[19] << 8));
	snprintf(p, sizeof p, "%s/a.out/llama.s", dir);
	cr_assert_eq(shrc("grep -q 'fmla' %s", p), 0, "no NEON FMA in the AArch64 assembly");
}

static int
count_files(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return 0;
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

Test(cg_cli, failed_compile_leaves_nothing, .init = setup, .fini = teardown)
{
	write_model("f", rm_default_config());
	RmConfig small = rm_default_config();
	small.dim = 32;
	write_model("g", small);
	char out[512];
	snprintf(out, sizeof out, "%s/f.out", dir);
	/* weights of the wrong shapes */
	cr_assert_neq(shrc("%s compile %s/f.elide -w %s/g.safetensors -o %s 2>/dev/null", ELIDE_BIN, dir, dir, out), 0);
	cr_assert_eq(count_files(out), 0);
	/* unknown target */
	cr_assert_neq(shrc("%s compile %s/f.elide -w %s/f.safetensors -o %s --target=nosuch-cpu-none 2>/dev/null", ELIDE_BIN,
	                   dir, dir, out),
	              0);
	cr_assert_eq(count_files(out), 0);
	/* an output path that cannot be written (a directory where NAME.json goes) */
	mkdir(out, 0777);
	char blocker[600];
	snprintf(blocker, sizeof blocker, "%s/llama.json", out);
	mkdir(blocker, 0777);
	cr_assert_neq(shrc("%s compile %s/f.elide -w %s/f.safetensors -o %s 2>/dev/null", ELIDE_BIN, dir, dir, out), 0);
	cr_assert_eq(count_files(out), 1, "outputs left behind next to the blocker");
}

Test(cg_cli, jit_matches_the_reference_fixture, .init = setup, .fini = teardown)
{
	char dump[512];
	snprintf(dump, sizeof dump, "%s/fixture.logits", dir);
	sh("%s run " ELIDE_SOURCE_DIR "/examples/llama/llama.elide -w " ELIDE_SOURCE_DIR
	   "/tests/fixtures/llama_tiny.safetensors --tokens 1,17,42,255,0,99,3,3,128,7,64,200,31,5,250,12"
	   " --dump-logits %s > /dev/null",
	   ELIDE_BIN, dump);
	compare_rows(dump, ELIDE_SOURCE_DIR "/tests/fixtures/llama_tiny.logits", 256, 16);
}

Test(cg_cli, avx2_and_sse_kernels_match, .init = setup, .fini = teardown)
{
	/* the 8- and 4-lane geometries, run on this machine when it has the features */
	RmConfig c = rm_default_config();
	c.seed = 21;
	write_model("v", c);
	char toks[64] = "5,77,3,200,9,31,8,150", targs[64] = "5 77 3 200 9 31 8 150";
	sh("%s run --interp %s/v.elide -w %s/v.safetensors --tokens %s --dump-logits %s/v.ref > /dev/null", ELIDE_BIN, dir,
	   dir, toks, dir);
	const char *cpus[] = { "haswell", "x86-64" };
	for (int i = 0; i < 2; i++) {
		if (i == 0 && !__builtin_cpu_supports("avx2"))
			continue;
		char extra[64];
		snprintf(extra, sizeof extra, "--cpu=%s", cpus[i]);
		compile_and_link("v", extra);
		sh("%s/v.out/driver decode %s/v.out/llama.weights 2 %s/v.got %s", dir, dir, dir, targs);
		char got[512], ref[512];
		snprintf(got, sizeof got, "%s/v.got", dir);
		snprintf(ref, sizeof ref, "%s/v.ref", dir);
		compare_rows(got, ref, c.vocab, 8);
		shrc("rm -rf %s/v.out", dir);
	}
}
