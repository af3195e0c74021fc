/* blob.c - the weight blob: checksum, header, validation, and read-only mapping of a
 * blob file.  The format is specified in docs/blob.md: a 64-byte little-endian header
 * (magic, version, header size, model hash, payload size, checksum), then the
 * payload at a 64-byte aligned offset.  The checksum is XXH64 with seed 0, written
 * from its published description: four independent lanes over 32-byte stripes, so
 * it runs at several GB/s and validating a large blob costs little next to reading
 * it from disk. */
#include "runtime/elide_rt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(sizeof(elide_blob_header) == ELIDE_BLOB_HEADER_SIZE, "blob header is 64 bytes");
_Static_assert(sizeof ELIDE_BLOB_MAGIC == 8, "magic is 8 bytes with its NUL");
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the weight blob format is little-endian; big-endian hosts are not supported"
#endif

enum { MAP_NONE = 0, MAP_MMAP = 1, MAP_HEAP = 2 };

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static inline uint64_t
rotl(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static inline uint64_t
rd64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline uint32_t
rd32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t
lane(uint64_t acc, uint64_t in)
{
	acc += in * P2;
	acc = rotl(acc, 31);
	return acc * P1;
}

static inline uint64_t
merge(uint64_t h, uint64_t v)
{
	h ^= lane(0, v);
	return h * P1 + P4;
}

void
elide_checksum_init(elide_checksum_state *s)
{
	memset(s, 0, sizeof *s);
	s->v[0] = P1 + P2;
	s->v[1] = P2;
	s->v[2] = 0;
	s->v[3] = 0 - P1;
}

static inline void
stripe(uint64_t v[4], const unsigned char *p)
{
	v[0] = lane(v[0], rd64(p));
	v[1] = lane(v[1], rd64(p + 8));
	v[2] = lane(v[2], rd64(p + 16));
	v[3] = lane(v[3], rd64(p + 24));
}

void
elide_checksum_update(elide_checksum_state *s, const void *data, size_t n)
{
	const unsigned char *p = data;
	s->total += n;
	if (s->nbuf) {
		size_t k = 32 - s->nbuf < n ? 32 - s->nbuf : n;
		memcpy(s->buf + s->nbuf, p, k);
		s->nbuf += (uint32_t)k;
		p += k;
		n -= k;
		if (s->nbuf < 32)
			return;
		stripe(s->v, s->buf);
		s->nbuf = 0;
	}
	uint64_t v[4] = { s->v[0], s->v[1], s->v[2], s->v[3] };
	for (; n >= 32; p += 32, n -= 32)
		stripe(v, p);
	memcpy(s->v, v, sizeof v);
	memcpy(s->buf, p, n);
	s->nbuf = (uint32_t)n;
}

uint64_t
elide_checksum_final(const elide_checksum_state *s)
{
	const unsigned char *p = s->buf, *end = p + s->nbuf;
	uint64_t h;
	if (s->total >= 32) {
		const uint64_t *v = s->v;
		h = rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18);
		h = merge(h, v[0]);
		h = merge(h, v[1]);
		h = merge(h, v[2]);
		h = merge(h, v[3]);
	} else {
		h = P5;
	}
	h += s->total;
	for (; end - p >= 8; p += 8) {
		h ^= lane(0, rd64(p));
		h = rotl(h, 27) * P1 + P4;
	}
	if (end - p >= 4) {
		h ^= (uint64_t)rd32(p) * P1;
		h = rotl(h, 23) * P2 + P3;
		p += 4;
	}
	for (; p < end; p++) {
		h ^= (uint64_t)*p * P5;
		h = rotl(h, 11) * P1;
	}
	h ^= h >> 33;
	h *= P2;
	h ^= h >> 29;
	h *= P3;
	h ^= h >> 32;
	return h;
}

uint64_t
elide_checksum(const void *data, size_t n)
{
	elide_checksum_state s;
	elide_checksum_init(&s);
	if (n)
		elide_checksum_update(&s, data, n);
	return elide_checksum_final(&s);
}

/* The checksum field of a blob from the payload's checksum: XXH64 of the 64 header
 * bytes with the checksum field holding XXH64 of the payload, so that it covers the
 * header and the payload.  (The reserved bytes and any header padding must be zero,
 * so they are covered too.) */
static uint64_t
header_sum(const elide_blob_header *h, uint64_t payload_sum)
{
	elide_blob_header c = *h;
	c.checksum = payload_sum;
	return elide_checksum(&c, sizeof c);
}

static uint64_t
blob_sum(const elide_blob_header *h, const void *payload, uint64_t payload_size)
{
	return header_sum(h, elide_checksum(payload, (size_t)payload_size));
}

void
elide_blob_header_fill(void *hdr64, uint64_t model_hash, uint64_t payload_size, uint64_t payload_checksum)
{
	elide_blob_header h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, ELIDE_BLOB_MAGIC, sizeof h.magic);
	h.version = ELIDE_BLOB_VERSION;
	h.header_size = ELIDE_BLOB_HEADER_SIZE;
	h.model_hash = model_hash;
	h.payload_size = payload_size;
	h.checksum = header_sum(&h, payload_checksum);
	memcpy(hdr64, &h, sizeof h);
}

void
elide_blob_header_init(void *hdr64, uint64_t model_hash, const void *payload, uint64_t payload_size)
{
	elide_blob_header_fill(hdr64, model_hash, payload_size, elide_checksum(payload, (size_t)payload_size));
}

/* True when the n bytes at p are all zero. */
static int
all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* The checks of docs/blob.md that need only the 64 header bytes, for a blob of size
 * bytes (steps 3-8 there, less the header padding; the caller does the rest). */
static elide_status
check_header(const elide_blob_header *h, size_t size, uint64_t model_hash, uint64_t want_payload)
{
	if (memcmp(h->magic, ELIDE_BLOB_MAGIC, sizeof h->magic) != 0)
		return ELIDE_ERR_BLOB_MAGIC;
	if (h->version != ELIDE_BLOB_VERSION)
		return ELIDE_ERR_BLOB_VERSION;
	if (h->header_size < ELIDE_BLOB_HEADER_SIZE || h->header_size % ELIDE_BLOB_ALIGN != 0 ||
	    h->header_size > size || h->payload_size != (uint64_t)(size - h->header_size))
		return ELIDE_ERR_BLOB_SIZE;
	if (!all_zero(h->reserved, sizeof h->reserved))
		return ELIDE_ERR_BLOB_VERSION; /* a later format */
	if (h->model_hash != model_hash)
		return ELIDE_ERR_BLOB_MODEL;
	/* the size the caller's code reads (a blob with another model's hash copied in) */
	if (want_payload != ELIDE_BLOB_ANY_SIZE && h->payload_size != want_payload)
		return ELIDE_ERR_BLOB_SIZE;
	return ELIDE_OK;
}

elide_status
elide_blob_check(const void *blob, size_t size, uint64_t model_hash, uint64_t want_payload,
                 const void **payload, size_t *payload_size)
{
	elide_blob_header h;
	if (!blob)
		return ELIDE_ERR_ARG;
	if (size < sizeof h)
		return size >= 8 && memcmp(blob, ELIDE_BLOB_MAGIC, 8) != 0 ? ELIDE_ERR_BLOB_MAGIC
		                                                        : ELIDE_ERR_BLOB_SIZE;
	memcpy(&h, blob, sizeof h);
	elide_status s = check_header(&h, size, model_hash, want_payload);
	if (s != ELIDE_OK)
		return s;
	/* header padding (header_size > 64): zero in this version */
	if (!all_zero((const unsigned char *)blob + sizeof h, h.header_size - sizeof h))
		return ELIDE_ERR_BLOB_VERSION;
	const unsigned char *pl = (const unsigned char *)blob + h.header_size;
	if ((uintptr_t)pl % ELIDE_BLOB_ALIGN != 0)
		return ELIDE_ERR_ALIGN;
	if (blob_sum(&h, pl, h.payload_size) != h.checksum)
		return ELIDE_ERR_BLOB_CHECKSUM;
	if (payload)
		*payload = pl;
	if (payload_size)
		*payload_size = (size_t)h.payload_size;
	return ELIDE_OK;
}

/* Reads exactly n bytes from fd (retrying short reads and EINTR). */
static int
read_all(int fd, unsigned char *buf, size_t n)
{
	while (n > 0) {
		ssize_t k = read(fd, buf, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		buf += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Opens path and returns its size in *size (a regular, non-empty file), or -1. */
static int
open_regular(const char *path, size_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    (uint64_t)st.st_size > (uint64_t)SIZE_MAX - ELIDE_BLOB_ALIGN) {
		close(fd);
		return -1;
	}
	*size = (size_t)st.st_size;
	return fd;
}

/* 64-aligned heap copy of the whole file, in elide_alloc_context's memory: a large
 * blob is placed on 2 MiB boundaries and offered to transparent huge pages, because
 * decode streams every weight once per token, and with 4 KiB pages the TLB misses
 * cost a large part of the memory bandwidth (measured: about 2x on a virtual
 * machine). */
static elide_status
read_heap(int fd, size_t size, void **out)
{
	_Static_assert(ELIDE_BLOB_ALIGN <= 64, "elide_alloc_context aligns to 64 bytes");
	void *b = elide_alloc_context(size);
	if (!b)
		return ELIDE_ERR_NOMEM;
	if (lseek(fd, 0, SEEK_SET) != 0 || read_all(fd, b, size) != 0) {
		free(b);
		return ELIDE_ERR_IO;
	}
	*out = b;
	return ELIDE_OK;
}

/* Opens path, a regular file of at least a blob header, into *fd and *size. */
static elide_status
open_blob_file(const char *path, int *fd, size_t *size)
{
	*fd = open_regular(path, size);
	if (*fd < 0)
		return ELIDE_ERR_IO;
	if (*size < ELIDE_BLOB_HEADER_SIZE) {
		close(*fd);
		return ELIDE_ERR_BLOB_SIZE;
	}
	return ELIDE_OK;
}

/* The arguments of the two openers checked, *out cleared, and the file opened. */
static elide_status
open_for(const char *path, elide_mapping *out, int *fd, size_t *size)
{
	if (!out)
		return ELIDE_ERR_ARG;
	memset(out, 0, sizeof *out);
	if (!path)
		return ELIDE_ERR_ARG;
	return open_blob_file(path, fd, size);
}

elide_status
elide_blob_map(const char *path, elide_mapping *out)
{
	size_t size;
	int fd;
	elide_status st = open_for(path, out, &fd, &size);
	if (st != ELIDE_OK)
		return st;
	void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p != MAP_FAILED) {
		close(fd);
		out->data = p;
		out->size = size;
		out->kind = MAP_MMAP;
		return ELIDE_OK;
	}
	void *b = NULL;
	elide_status s = read_heap(fd, size, &b);
	close(fd);
	if (s != ELIDE_OK)
		return s;
	out->data = b;
	out->size = size;
	out->kind = MAP_HEAP;
	return ELIDE_OK;
}

void
elide_blob_unmap(elide_mapping *m)
{
	if (!m)
		return;
	if (m->kind == MAP_MMAP)
		munmap((void *)m->data, m->size);
	else if (m->kind == MAP_HEAP)
		free((void *)m->data);
	memset(m, 0, sizeof *m);
}

elide_status
elide_blob_open(const char *path, uint64_t model_hash, uint64_t want_payload, elide_mapping *out,
                const void **payload, size_t *payload_size)
{
	/* a private copy, not a mapping: a file truncated or rewritten after loading
	 * must not fault (SIGBUS) or change the weights under a running model */
	size_t size;
	int fd;
	elide_status st = open_for(path, out, &fd, &size);
	if (st != ELIDE_OK)
		return st;
	/* the header first: a file of the wrong model or size is not read in full */
	elide_blob_header h;
	elide_status s = read_all(fd, (unsigned char *)&h, sizeof h) == 0
	                         ? check_header(&h, size, model_hash, want_payload)
	                         : ELIDE_ERR_IO;
	if (s != ELIDE_OK) {
		close(fd);
		return s;
	}
	void *b = NULL;
	s = read_heap(fd, size, &b);
	close(fd);
	if (s != ELIDE_OK)
		return s;
	out->data = b;
	out->size = size;
	out->kind = MAP_HEAP;
	s = elide_blob_check(out->data, out->size, model_hash, want_payload, payload, payload_size);
	if (s != ELIDE_OK)
		elide_blob_unmap(out);
	return s;
}

elide_status
elide_blob_read_file(const char *path, void **blob, size_t *size)
{
	size_t n;
	if (!path || !blob || !size)
		return ELIDE_ERR_ARG;
	int fd = open_regular(path, &n);
	if (fd < 0)
		return ELIDE_ERR_IO;
	elide_status s = read_heap(fd, n, blob);
	close(fd);
	if (s == ELIDE_OK)
		*size = n;
	return s;
}
