/* mutate.c - the input generator of scripts/hostile_campaign.sh: writes COUNT hostile
 * variants of one well-formed file, each a seeded, reproducible mutation, and prints
 * one line per variant ("N<TAB>what was done") for the campaign's log.
 *   mutate KIND IN OUTPREFIX COUNT SEED     writes OUTPREFIX.N for N in [0, COUNT)
 * KIND: text (an .elide or .eir source: token deletions, duplications and swaps,
 * NUL/BOM/invalid UTF-8, huge literals, deep nesting, long names, truncation),
 * safetensors (header numbers, dtypes, the length field, JSON damage, NaN/Inf data),
 * gguf (any header field set to a boundary value, truncation, NaN/Inf data) and blob
 * (the weight blob: flips, truncation, header fields, with the checksum rewritten so
 * that only the size and model checks stand between the file and the kernels).
 * Built by the campaign script with cc against the runtime (for the checksum). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elide_rt.h"

typedef struct Buf {
	unsigned char *p; /* bytes */
	size_t n;         /* length */
	size_t cap;       /* allocated */
} Buf;

static uint64_t rng_state;

static uint64_t
rnd(void)
{
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static size_t
below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

static void
reserve(Buf *b, size_t n)
{
	if (n <= b->cap)
		return;
	size_t c = b->cap ? b->cap : 64;
	while (c < n)
		c *= 2;
	b->p = realloc(b->p, c);
	if (!b->p) {
		fprintf(stderr, "mutate: out of memory\n");
		exit(2);
	}
	b->cap = c;
}

/* replaces [at, at+del) by the n bytes of s */
static void
splice(Buf *b, size_t at, size_t del, const void *s, size_t n)
{
	if (at > b->n)
		at = b->n;
	if (del > b->n - at)
		del = b->n - at;
	reserve(b, b->n - del + n + 1);
	memmove(b->p + at + n, b->p + at + del, b->n - at - del);
	if (n)
		memcpy(b->p + at, s, n);
	b->n = b->n - del + n;
}

static void
put_le(Buf *b, size_t at, uint64_t v, int width)
{
	for (int i = 0; i < width && at + (size_t)i < b->n; i++)
		b->p[at + (size_t)i] = (unsigned char)(v >> (8 * i));
}

static uint64_t
get_le(const Buf *b, size_t at, int width)
{
	uint64_t v = 0;
	for (int i = 0; i < width && at + (size_t)i < b->n; i++)
		v |= (uint64_t)b->p[at + (size_t)i] << (8 * i);
	return v;
}

/* ---- boundary values ---- */

static const uint64_t interesting[] = {
	0, 1, 2, 3, 7, 8, 31, 32, 63, 64, 255, 256, 4095, 4096, 65535, 65536,
	0x7fffffffull, 0x80000000ull, 0xffffffffull, 0x100000000ull,
	0x7fffffffffffffffull, 0x8000000000000000ull, 0xffffffffffffffffull,
	0xfffffffffffffff0ull, 1ull << 40, 1ull << 53, (1ull << 53) + 1,
};
#define NINTERESTING (sizeof interesting / sizeof interesting[0])

static uint64_t
pick_value(uint64_t old)
{
	switch (below(4)) {
	case 0: return old + 1;
	case 1: return old - 1;
	case 2: return old * 2 + below(3);
	default: return interesting[below(NINTERESTING)];
	}
}

/* ---- text ---- */

static const char *const text_specials[] = {
	"\0", "\xef\xbb\xbf", "\xff", "\xc3\x28", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
	"\x01", "\x7f", "\r", "\t\v\f", "\\", "\"", "#", "/*", "//", "\xe2\x80\xae",
};
static const size_t text_special_len[] = { 1, 3, 1, 2, 2, 3, 4, 1, 1, 1, 3, 1, 1, 1, 2, 2, 3 };
#define NSPECIALS (sizeof text_specials / sizeof text_specials[0])

static const char *const huge_literals[] = {
	"99999999999999999999999999", "18446744073709551616", "9223372036854775808",
	"2147483648", "-2147483649", "4294967296", "1e999", "1e-999", "-1e400", "0x7fffffff",
	"1.7976931348623157e308", "4.9e-324", "nan", "inf", "-0", "0.0", "00000000000000000001",
	"1e", "1.", ".5", "1..2", "1e+", "-", "0", "-1", "1048577", "65536",
};
#define NHUGE (sizeof huge_literals / sizeof huge_literals[0])

typedef struct Tok {
	size_t at, len; /* bytes of one token */
} Tok;

static int
is_word(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
}

static size_t
tokenize(const Buf *b, Tok **out)
{
	size_t n = 0, cap = 256;
	Tok *t = malloc(cap * sizeof *t);
	for (size_t i = 0; i < b->n;) {
		unsigned char c = b->p[i];
		if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
			i++;
			continue;
		}
		size_t j = i + 1;
		if (is_word(c))
			while (j < b->n && is_word(b->p[j]))
				j++;
		if (n == cap)
			t = realloc(t, (cap *= 2) * sizeof *t);
		t[n++] = (Tok){ i, j - i };
		i = j;
	}
	*out = t;
	return n;
}

static void
text_one(Buf *b, char *what, size_t nwhat)
{
	Tok *t;
	size_t nt = tokenize(b, &t);
	if (nt < 2) {
		free(t);
		splice(b, 0, 0, "\0", 1);
		snprintf(what, nwhat, "nul at 0");
		return;
	}
	size_t k = below(nt), k2 = below(nt);
	Tok a = t[k], c = t[k2];
	char tmp[256];
	unsigned m = (unsigned)below(14);
	switch (m) {
	case 0: /* delete a token */
		splice(b, a.at, a.len, "", 0);
		snprintf(what, nwhat, "delete token %zu", k);
		break;
	case 1: { /* duplicate a token */
		Buf s = { 0 };
		splice(&s, 0, 0, b->p + a.at, a.len);
		splice(&s, s.n, 0, " ", 1);
		splice(b, a.at, 0, s.p, s.n);
		free(s.p);
		snprintf(what, nwhat, "duplicate token %zu", k);
		break;
	}
	case 2: { /* replace a token by another one of the file */
		Buf s = { 0 };
		splice(&s, 0, 0, b->p + c.at, c.len);
		splice(b, a.at, a.len, s.p, s.n);
		free(s.p);
		snprintf(what, nwhat, "token %zu := token %zu", k, k2);
		break;
	}
	case 3: { /* a special byte sequence at a token boundary */
		size_t s = below(NSPECIALS);
		size_t at = below(2) ? a.at : a.at + a.len;
		splice(b, at, 0, text_specials[s], text_special_len[s]);
		snprintf(what, nwhat, "special %zu at byte %zu", s, at);
		break;
	}
	case 4: { /* a huge or odd literal in place of a token (a number where there is one) */
		for (size_t i = 0; i < nt; i++) {
			Tok u = t[(k + i) % nt];
			if (b->p[u.at] >= '0' && b->p[u.at] <= '9') {
				a = u;
				break;
			}
		}
		size_t h = below(NHUGE);
		splice(b, a.at, a.len, huge_literals[h], strlen(huge_literals[h]));
		snprintf(what, nwhat, "literal '%s' at byte %zu", huge_literals[h], a.at);
		break;
	}
	case 5: { /* deep nesting: parentheses or braces around a token */
		size_t depth = (size_t)1 << (4 + below(13)); /* 16 .. 65536 */
		const char *open = below(2) ? "(" : (below(2) ? "[" : "{");
		const char *close = open[0] == '(' ? ")" : open[0] == '[' ? "]" : "}";
		Buf s = { 0 };
		for (size_t i = 0; i < depth; i++)
			splice(&s, s.n, 0, open, 1);
		splice(&s, s.n, 0, b->p + a.at, a.len);
		if (below(4))
			for (size_t i = 0; i < depth; i++)
				splice(&s, s.n, 0, close, 1);
		splice(b, a.at, a.len, s.p, s.n);
		free(s.p);
		snprintf(what, nwhat, "nesting %s x %zu at token %zu", open, depth, k);
		break;
	}
	case 6: { /* a long name or string */
		size_t len = (size_t)1 << (8 + below(13)); /* 256 .. 1 MiB */
		Buf s = { 0 };
		reserve(&s, len + 2);
		if (below(2)) {
			s.p[0] = '"';
			memset(s.p + 1, 'x', len);
			s.p[len + 1] = '"';
			s.n = len + 2;
		} else {
			memset(s.p, 'a', len);
			s.n = len;
		}
		splice(b, a.at, a.len, s.p, s.n);
		free(s.p);
		snprintf(what, nwhat, "long name or string of %zu bytes at token %zu", len, k);
		break;
	}
	case 7: /* truncate */
		b->n = below(b->n);
		snprintf(what, nwhat, "truncate at %zu", b->n);
		break;
	case 8: { /* swap two tokens */
		if (a.at > c.at) {
			Tok x = a;
			a = c;
			c = x;
		}
		if (a.at + a.len <= c.at) {
			Buf s1 = { 0 }, s2 = { 0 };
			splice(&s1, 0, 0, b->p + a.at, a.len);
			splice(&s2, 0, 0, b->p + c.at, c.len);
			splice(b, c.at, c.len, s1.p, s1.n);
			splice(b, a.at, a.len, s2.p, s2.n);
			free(s1.p);
			free(s2.p);
		}
		snprintf(what, nwhat, "swap tokens %zu %zu", k, k2);
		break;
	}
	case 9: { /* a line deleted or repeated many times */
		size_t ls = a.at, le = a.at;
		while (ls > 0 && b->p[ls - 1] != '\n')
			ls--;
		while (le < b->n && b->p[le] != '\n')
			le++;
		if (le < b->n)
			le++;
		if (below(2)) {
			splice(b, ls, le - ls, "", 0);
			snprintf(what, nwhat, "delete line at byte %zu", ls);
		} else {
			size_t times = 1 + below(2000);
			Buf s = { 0 };
			for (size_t i = 0; i < times; i++)
				splice(&s, s.n, 0, b->p + ls, le - ls);
			splice(b, ls, 0, s.p, s.n);
			free(s.p);
			snprintf(what, nwhat, "repeat line at byte %zu x %zu", ls, times);
		}
		break;
	}
	case 10: { /* random bytes flipped */
		size_t n = 1 + below(8);
		for (size_t i = 0; i < n && b->n; i++)
			b->p[below(b->n)] ^= (unsigned char)(1u << below(8));
		snprintf(what, nwhat, "%zu bit flips", n);
		break;
	}
	case 11: /* an unterminated string or comment from a token on */
		splice(b, a.at, 0, below(2) ? "\"" : "/*", below(2) ? 1 : 2);
		snprintf(what, nwhat, "open quote/comment at token %zu", k);
		break;
	case 12: { /* a long chain: a + a + ... */
		size_t terms = (size_t)1 << (3 + below(14));
		Buf s = { 0 };
		for (size_t i = 0; i < terms; i++) {
			if (i)
				splice(&s, s.n, 0, " + ", 3);
			splice(&s, s.n, 0, b->p + a.at, a.len);
		}
		splice(b, a.at, a.len, s.p, s.n);
		free(s.p);
		snprintf(what, nwhat, "chain of %zu terms at token %zu", terms, k);
		break;
	}
	default: { /* a random printable token at a boundary */
		static const char *const words[] = {
			"for", "in", "if", "else", "return", "entry", "fn", "model", "policy", "weights",
			"state", "const", "..", "->", ":", ";", ",", "=", "%v0", "@x", "f32", "i32",
			"bool", "ret", "0..0", "-1", "[]", "()", "{}", "kvcache", "layers", "ctx",
		};
		size_t w = below(sizeof words / sizeof words[0]);
		snprintf(tmp, sizeof tmp, " %s ", words[w]);
		splice(b, a.at, 0, tmp, strlen(tmp));
		snprintf(what, nwhat, "insert '%s' at token %zu", words[w], k);
		break;
	}
	}
	free(t);
}

/* ---- safetensors ---- */

static void
safetensors_one(Buf *b, char *what, size_t nwhat)
{
	if (b->n < 8) {
		snprintf(what, nwhat, "too short to mutate");
		return;
	}
	uint64_t hlen = get_le(b, 0, 8);
	if (hlen > b->n - 8)
		hlen = b->n - 8;
	size_t h0 = 8, h1 = 8 + (size_t)hlen;
	unsigned m = (unsigned)below(12);
	switch (m) {
	case 0: case 1: case 2: { /* a number of the header to a boundary value */
		size_t nums[4096], nn = 0;
		for (size_t i = h0; i < h1 && nn < 4096; i++)
			if (b->p[i] >= '0' && b->p[i] <= '9' && !(b->p[i - 1] >= '0' && b->p[i - 1] <= '9'))
				nums[nn++] = i;
		if (!nn)
			break;
		size_t at = nums[below(nn)], e = at;
		while (e < h1 && b->p[e] >= '0' && b->p[e] <= '9')
			e++;
		uint64_t old = strtoull((const char *)b->p + at, NULL, 10);
		char s[64];
		if (below(6) == 0)
			snprintf(s, sizeof s, "%s", (const char *[]){ "-1", "1e3", "1.5", "0x10", "\"3\"", "null", "99999999999999999999999" }[below(7)]);
		else
			snprintf(s, sizeof s, "%llu", (unsigned long long)pick_value(old));
		splice(b, at, e - at, s, strlen(s));
		put_le(b, 0, hlen + strlen(s) - (e - at), 8);
		snprintf(what, nwhat, "header number at %zu: %llu -> %s", at, (unsigned long long)old, s);
		break;
	}
	case 3: { /* a dtype */
		static const char *const dt[] = { "F16", "BF16", "F64", "I8", "U8", "I32", "I64", "BOOL", "F8_E4M3", "X", "", "f32", "F32 " };
		unsigned char *p = memmem(b->p + h0 + below(h1 - h0), h1 - h0 - 0, "\"dtype\"", 7);
		if (!p || (size_t)(p - b->p) >= h1)
			p = memmem(b->p + h0, h1 - h0, "\"dtype\"", 7);
		if (!p)
			break;
		size_t at = (size_t)(p - b->p) + 7;
		while (at < h1 && b->p[at] != '"')
			at++;
		size_t e = at + 1;
		while (e < h1 && b->p[e] != '"')
			e++;
		const char *d = dt[below(sizeof dt / sizeof dt[0])];
		splice(b, at + 1, e - at - 1, d, strlen(d));
		put_le(b, 0, hlen + strlen(d) - (e - at - 1), 8);
		snprintf(what, nwhat, "dtype at %zu -> '%s'", at, d);
		break;
	}
	case 4: { /* the length field */
		uint64_t v = below(3) ? pick_value(hlen) : hlen + below(16) - 8;
		put_le(b, 0, v, 8);
		snprintf(what, nwhat, "header length %llu -> %llu", (unsigned long long)hlen, (unsigned long long)v);
		break;
	}
	case 5: /* truncation */
		b->n = below(b->n);
		snprintf(what, nwhat, "truncate at %zu", b->n);
		break;
	case 6: { /* one header byte changed, the length kept consistent */
		size_t at = h0 + below(h1 - h0);
		static const char cs[] = "{}[]\":,\\ \0\x01\xff" "0a-";
		unsigned char c = (unsigned char)cs[below(sizeof cs - 1)];
		if (below(2)) {
			b->p[at] = c;
			snprintf(what, nwhat, "header byte %zu := 0x%02x", at, c);
		} else {
			splice(b, at, 0, &c, 1);
			put_le(b, 0, hlen + 1, 8);
			snprintf(what, nwhat, "header byte 0x%02x inserted at %zu", c, at);
		}
		break;
	}
	case 7: { /* NaN, Inf, huge or denormal values in the data */
		static const uint32_t bad[] = { 0x7fc00000u, 0x7f800000u, 0xff800000u, 0x7f7fffffu, 0x00000001u, 0xffffffffu };
		size_t n = 1 + below(4);
		size_t data = b->n - h1;
		for (size_t i = 0; i < n && data >= 4; i++)
			put_le(b, h1 + below(data / 4) * 4, bad[below(6)], 4);
		snprintf(what, nwhat, "%zu NaN/Inf/extreme data words", n);
		break;
	}
	case 8: { /* a key duplicated: the first entry's text again */
		unsigned char *p = memmem(b->p + h0, h1 - h0, "},", 2);
		if (!p)
			break;
		size_t e = (size_t)(p - b->p) + 2;
		Buf s = { 0 };
		splice(&s, 0, 0, b->p + h0 + 1, e - h0 - 1);
		splice(b, h0 + 1, 0, s.p, s.n);
		put_le(b, 0, hlen + s.n, 8);
		free(s.p);
		snprintf(what, nwhat, "first entry duplicated (%zu bytes)", s.n);
		break;
	}
	case 9: { /* deep JSON nesting in the metadata */
		size_t depth = (size_t)1 << (3 + below(15));
		Buf s = { 0 };
		splice(&s, 0, 0, "\"__metadata__\":", 15);
		for (size_t i = 0; i < depth; i++)
			if (below(2))
				splice(&s, s.n, 0, "[", 1);
			else
				splice(&s, s.n, 0, "{\"a\":", 5);
		splice(&s, s.n, 0, "1", 1);
		splice(&s, s.n, 0, ",", 1);
		splice(b, h0 + 1, 0, s.p, s.n);
		put_le(b, 0, hlen + s.n, 8);
		free(s.p);
		snprintf(what, nwhat, "metadata nested %zu deep (unbalanced)", depth);
		break;
	}
	case 10: { /* trailing bytes, or a data byte flip */
		if (below(2)) {
			size_t n = 1 + below(4096);
			Buf s = { 0 };
			reserve(&s, n);
			memset(s.p, 0, n);
			splice(b, b->n, 0, s.p, n);
			free(s.p);
			snprintf(what, nwhat, "%zu trailing bytes", n);
		} else {
			size_t at = h1 + below(b->n - h1);
			if (at < b->n)
				b->p[at] ^= 0x80;
			snprintf(what, nwhat, "data byte %zu flipped", at);
		}
		break;
	}
	default: { /* bytes anywhere */
		size_t n = 1 + below(6);
		for (size_t i = 0; i < n && b->n; i++)
			b->p[below(b->n)] = (unsigned char)rnd();
		snprintf(what, nwhat, "%zu random bytes", n);
		break;
	}
	}
}

/* ---- gguf: a field map of the header, then one field changed ---- */

typedef struct Field {
	size_t at;  /* byte offset */
	int width;  /* bytes (4 or 8) */
	const char *kind; /* what it is, for the log */
} Field;

static size_t
gguf_fields(const Buf *b, Field *f, size_t cap, size_t *data_at)
{
	size_t n = 0, at = 4;
#define ADD(w, k) do { if (n < cap) f[n++] = (Field){ at, (w), (k) }; at += (w); } while (0)
	ADD(4, "version");
	uint64_t nt = get_le(b, at, 8);
	ADD(8, "tensor count");
	uint64_t nkv = get_le(b, at, 8);
	ADD(8, "kv count");
	static const int scalar_size[] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
	for (uint64_t i = 0; i < nkv && at + 12 <= b->n; i++) {
		uint64_t kl = get_le(b, at, 8);
		ADD(8, "key length");
		at += kl;
		uint32_t ty = (uint32_t)get_le(b, at, 4);
		ADD(4, "value type");
		if (ty == 8) {
			uint64_t sl = get_le(b, at, 8);
			ADD(8, "string length");
			at += sl;
		} else if (ty == 9) {
			uint32_t et = (uint32_t)get_le(b, at, 4);
			ADD(4, "array type");
			uint64_t cnt = get_le(b, at, 8);
			ADD(8, "array count");
			for (uint64_t j = 0; j < cnt && at < b->n; j++) {
				if (et == 8) {
					uint64_t sl = get_le(b, at, 8);
					ADD(8, "array string length");
					at += sl;
				} else if (et < 13 && scalar_size[et]) {
					at += (size_t)scalar_size[et];
				} else {
					return n;
				}
			}
		} else if (ty < 13 && scalar_size[ty]) {
			if (scalar_size[ty] >= 4)
				ADD(scalar_size[ty], "scalar value");
			else
				at += (size_t)scalar_size[ty];
		} else {
			return n;
		}
	}
	for (uint64_t i = 0; i < nt && at + 8 <= b->n; i++) {
		uint64_t nl = get_le(b, at, 8);
		ADD(8, "tensor name length");
		at += nl;
		uint32_t rank = (uint32_t)get_le(b, at, 4);
		ADD(4, "tensor rank");
		for (uint32_t d = 0; d < rank && d < 8; d++)
			ADD(8, "tensor extent");
		ADD(4, "tensor type");
		ADD(8, "tensor offset");
	}
#undef ADD
	*data_at = (at + 31) / 32 * 32;
	return n;
}

static void
gguf_one(Buf *b, char *what, size_t nwhat)
{
	Field f[4096];
	size_t data_at = b->n;
	size_t nf = gguf_fields(b, f, 4096, &data_at);
	unsigned m = (unsigned)below(10);
	if (m < 6 && nf) {
		Field x = f[below(nf)];
		uint64_t old = get_le(b, x.at, x.width), v = pick_value(old);
		if (x.width == 4 && below(2))
			v = (uint32_t)v;
		put_le(b, x.at, v, x.width);
		snprintf(what, nwhat, "%s at %zu: %llu -> %llu", x.kind, x.at, (unsigned long long)old, (unsigned long long)v);
	} else if (m == 6) {
		b->n = below(b->n);
		snprintf(what, nwhat, "truncate at %zu", b->n);
	} else if (m == 7 && data_at + 4 <= b->n) {
		static const uint32_t bad[] = { 0x7fc00000u, 0x7f800000u, 0xff800000u, 0x7c00u << 16, 0xffffffffu };
		size_t n = 1 + below(4);
		for (size_t i = 0; i < n; i++)
			put_le(b, data_at + below((b->n - data_at) / 4) * 4, bad[below(5)], 4);
		snprintf(what, nwhat, "%zu NaN/Inf data words", n);
	} else if (m == 8) {
		size_t at = below(data_at < b->n ? data_at : b->n);
		b->p[at] = (unsigned char)rnd();
		snprintf(what, nwhat, "header byte %zu random", at);
	} else {
		size_t n = 1 + below(8);
		for (size_t i = 0; i < n && b->n; i++)
			b->p[below(b->n)] ^= (unsigned char)(1u << below(8));
		snprintf(what, nwhat, "%zu bit flips", n);
	}
}

/* ---- weight blob ---- */

static void
blob_rechecksum(Buf *b)
{
	if (b->n < 64)
		return;
	uint32_t hs = (uint32_t)get_le(b, 12, 4);
	uint64_t ps = get_le(b, 24, 8);
	if (hs < 64 || hs > b->n || ps > b->n - hs)
		ps = b->n >= 64 ? b->n - 64 : 0, hs = 64;
	put_le(b, 32, elide_checksum(b->p + hs, (size_t)ps), 8);
	put_le(b, 32, elide_checksum(b->p, 64), 8);
}

static void
blob_one(Buf *b, const Buf *other, char *what, size_t nwhat)
{
	unsigned m = (unsigned)below(10);
	int resum = 0;
	switch (m) {
	case 0: { /* header field to a boundary value */
		static const struct { size_t at; int w; const char *k; } hf[] = {
			{ 8, 4, "version" }, { 12, 4, "header_size" }, { 16, 8, "model_hash" },
			{ 24, 8, "payload_size" }, { 32, 8, "checksum" }, { 40, 8, "reserved" }, { 56, 8, "reserved" },
		};
		size_t i = below(7);
		uint64_t old = get_le(b, hf[i].at, hf[i].w), v = pick_value(old);
		put_le(b, hf[i].at, v, hf[i].w);
		resum = below(2);
		snprintf(what, nwhat, "%s %llu -> %llu%s", hf[i].k, (unsigned long long)old, (unsigned long long)v, resum ? " (checksum rewritten)" : "");
		break;
	}
	case 1: case 2: { /* bit flips anywhere, sometimes with the checksum rewritten */
		size_t n = 1 + below(8);
		for (size_t i = 0; i < n && b->n; i++)
			b->p[below(b->n)] ^= (unsigned char)(1u << below(8));
		resum = m == 2;
		snprintf(what, nwhat, "%zu bit flips%s", n, resum ? " (checksum rewritten)" : "");
		break;
	}
	case 3: { /* truncated, the size fields rewritten to match */
		size_t n = below(b->n);
		b->n = n;
		resum = below(2);
		if (resum && n >= 64)
			put_le(b, 24, n - 64, 8);
		snprintf(what, nwhat, "truncate at %zu%s", n, resum ? " (size and checksum rewritten)" : "");
		break;
	}
	case 4: { /* bytes appended, sizes rewritten */
		size_t n = 1 + below(8192);
		Buf s = { 0 };
		reserve(&s, n);
		memset(s.p, 0, n);
		splice(b, b->n, 0, s.p, n);
		free(s.p);
		resum = below(2);
		if (resum)
			put_le(b, 24, b->n - 64, 8);
		snprintf(what, nwhat, "%zu bytes appended%s", n, resum ? " (size and checksum rewritten)" : "");
		break;
	}
	case 5: { /* the other model's blob with this model's hash */
		if (!other || other->n < 64)
			break;
		uint64_t hash = get_le(b, 16, 8);
		b->n = 0;
		splice(b, 0, 0, other->p, other->n);
		put_le(b, 16, hash, 8);
		resum = below(4) != 0;
		snprintf(what, nwhat, "other model's blob, this hash%s", resum ? " (checksum rewritten)" : "");
		break;
	}
	case 6: { /* a larger header: padding inserted, maybe not zero */
		size_t pad = 64 * (1 + below(3));
		Buf s = { 0 };
		reserve(&s, pad);
		memset(s.p, 0, pad);
		if (below(2))
			s.p[below(pad)] = 1;
		splice(b, 64, 0, s.p, pad);
		free(s.p);
		put_le(b, 12, 64 + pad, 4);
		resum = 0; /* the checksum rule covers only the first 64 bytes and the payload */
		if (b->n >= 64 + pad) {
			put_le(b, 32, elide_checksum(b->p + 64 + pad, b->n - 64 - pad), 8);
			put_le(b, 32, elide_checksum(b->p, 64), 8);
		}
		snprintf(what, nwhat, "header_size %zu with padding", 64 + pad);
		break;
	}
	case 7: { /* payload NaN/Inf, checksum rewritten */
		static const uint32_t bad[] = { 0x7fc00000u, 0x7f800000u, 0xff800000u, 0x7f7fffffu };
		size_t n = 1 + below(4);
		for (size_t i = 0; i < n && b->n > 68; i++)
			put_le(b, 64 + below((b->n - 64) / 4) * 4, bad[below(4)], 4);
		resum = 1;
		snprintf(what, nwhat, "%zu NaN/Inf payload words (checksum rewritten)", n);
		break;
	}
	case 8: { /* payload halved, size and checksum rewritten */
		b->n = 64 + (b->n - 64) / 2 / 64 * 64;
		put_le(b, 24, b->n - 64, 8);
		resum = 1;
		snprintf(what, nwhat, "payload halved (size and checksum rewritten)");
		break;
	}
	default: { /* random header bytes */
		size_t n = 1 + below(4);
		for (size_t i = 0; i < n; i++)
			b->p[below(b->n < 64 ? b->n : 64)] = (unsigned char)rnd();
		snprintf(what, nwhat, "%zu random header bytes", n);
		break;
	}
	}
	if (resum)
		blob_rechecksum(b);
}

static int
slurp(const char *path, Buf *b)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	unsigned char tmp[65536];
	size_t n;
	while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
		splice(b, b->n, 0, tmp, n);
	fclose(f);
	return 1;
}

int
main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: mutate text|safetensors|gguf|blob IN OUTPREFIX COUNT SEED [OTHER_BLOB]\n");
		return 2;
	}
	const char *kind = argv[1];
	Buf orig = { 0 }, other = { 0 };
	if (!slurp(argv[2], &orig)) {
		fprintf(stderr, "mutate: cannot read '%s'\n", argv[2]);
		return 2;
	}
	if (argc > 6 && !slurp(argv[6], &other)) {
		fprintf(stderr, "mutate: cannot read '%s'\n", argv[6]);
		return 2;
	}
	long count = atol(argv[4]);
	uint64_t seed = strtoull(argv[5], NULL, 10);
	for (long i = 0; i < count; i++) {
		rng_state = seed * 1000003u + (uint64_t)i;
		Buf b = { 0 };
		splice(&b, 0, 0, orig.p, orig.n);
		char what[512] = "";
		int rounds = !strcmp(kind, "text") && below(5) == 0 ? 2 + (int)below(3) : 1;
		for (int r = 0; r < rounds; r++) {
			char w[256] = "";
			if (!strcmp(kind, "text"))
				text_one(&b, w, sizeof w);
			else if (!strcmp(kind, "safetensors"))
				safetensors_one(&b, w, sizeof w);
			else if (!strcmp(kind, "gguf"))
				gguf_one(&b, w, sizeof w);
			else if (!strcmp(kind, "blob"))
				blob_one(&b, other.n ? &other : NULL, w, sizeof w);
			else {
				fprintf(stderr, "mutate: unknown kind '%s'\n", kind);
				return 2;
			}
			size_t l = strlen(what);
			snprintf(what + l, sizeof what - l, "%s%s", r ? "; " : "", w);
		}
		char path[4096];
		snprintf(path, sizeof path, "%s.%ld", argv[3], i);
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(b.p, 1, b.n, f) != b.n || fclose(f) != 0) {
			fprintf(stderr, "mutate: cannot write '%s'\n", path);
			return 2;
		}
		printf("%ld\t%s\n", i, what);
		free(b.p);
	}
	free(orig.p);
	free(other.p);
	return 0;
}
