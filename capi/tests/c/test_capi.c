/* C test of the sae-kernels C ABI (run by .ci/stages/60-capi.sh, plain and under
 * AddressSanitizer + UBSan):
 *
 *   test_capi REPO_ROOT
 *
 * For every SAELens fixture (tests/fixtures/saelens/<name>, listed in
 * capi/tests/c/fixtures/LIST) it loads the folder, encodes SAELens' inputs and
 * compares with SAELens' own outputs (capi/tests/c/fixtures/<name>.txt, made from
 * expected.json by gen_fixtures.py): codes and reconstructions within 1e-5 of the
 * largest reference magnitude, identical sets of non-zero codes. It checks CSR and
 * top-k-per-row output against the dense codes, CSR decoding, the no-allocation view
 * over caller-owned weights (same codes bit for bit), four threads sharing one model,
 * and the error paths (status codes, messages, outputs untouched).
 *
 * Prints "capi: N passed, M failed" and exits non-zero if anything failed. */
#define _POSIX_C_SOURCE 200809L
#include "sae_kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond, ...)                                                  \
  do {                                                                    \
    if (cond) {                                                           \
      passed++;                                                           \
    } else {                                                              \
      failed++;                                                           \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                \
      fprintf(stderr, __VA_ARGS__);                                       \
      fprintf(stderr, "\n");                                              \
    }                                                                     \
  } while (0)

/* An expected status, and a last-error message that names `needle`. */
#define CHECK_ERR(call, want, needle)                                         \
  do {                                                                        \
    SaeStatus s_ = (call);                                                    \
    const char *m_ = sae_last_error();                                        \
    CHECK(s_ == (want) && strstr(m_, (needle)) != NULL,                       \
          "%s: status %d (want %d), message \"%s\" (want it to name %s)",     \
          #call, (int)s_, (int)(want), m_, needle);                           \
  } while (0)

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}

/* ---------- fixtures ---------- */

typedef struct {
  char name[64];
  size_t n, d, h, k;
  unsigned arch, apply;
  double *x, *codes, *recon;
  int has_weights;
  float *w_enc, *b_enc, *w_dec, *b_dec, *threshold;
  size_t threshold_len;
} Fixture;

static double *read_array(FILE *f, const char *want, size_t count) {
  char label[64];
  size_t got;
  if (fscanf(f, "%63s %zu", label, &got) != 2 || strcmp(label, want) != 0 || got != count) {
    fprintf(stderr, "fixture: expected array %s of %zu\n", want, count);
    exit(2);
  }
  double *a = xmalloc(count * sizeof(double));
  for (size_t i = 0; i < count; i++) {
    if (fscanf(f, "%lf", &a[i]) != 1) {
      fprintf(stderr, "fixture: short array %s\n", want);
      exit(2);
    }
  }
  return a;
}

static float *to_f32(const double *a, size_t n) {
  float *o = xmalloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) o[i] = (float)a[i];
  return o;
}

static float *read_f32(FILE *f, const char *want, size_t count) {
  double *a = read_array(f, want, count);
  float *o = to_f32(a, count);
  free(a);
  return o;
}

static void read_fixture(const char *root, const char *name, Fixture *fx) {
  char path[4096];
  snprintf(path, sizeof path, "%s/capi/tests/c/fixtures/%s.txt", root, name);
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(2);
  }
  int version;
  memset(fx, 0, sizeof *fx);
  if (fscanf(f, "saek-fixture %d name %63s dims %zu %zu %zu arch %u %zu %u", &version,
             fx->name, &fx->n, &fx->d, &fx->h, &fx->arch, &fx->k, &fx->apply) != 8 ||
      version != 1) {
    fprintf(stderr, "%s: bad header\n", path);
    exit(2);
  }
  fx->x = read_array(f, "x", fx->n * fx->d);
  fx->codes = read_array(f, "codes", fx->n * fx->h);
  fx->recon = read_array(f, "recon", fx->n * fx->d);
  char label[64];
  long pos = ftell(f);
  if (fscanf(f, "%63s", label) == 1 && strcmp(label, "w_enc") == 0) {
    fseek(f, pos, SEEK_SET);
    fx->has_weights = 1;
    fx->w_enc = read_f32(f, "w_enc", fx->d * fx->h);
    fx->b_enc = read_f32(f, "b_enc", fx->h);
    fx->w_dec = read_f32(f, "w_dec", fx->h * fx->d);
    fx->b_dec = read_f32(f, "b_dec", fx->d);
    fx->threshold_len = fx->arch == SAE_ARCH_JUMPRELU ? fx->h : 0;
    fx->threshold = read_f32(f, "threshold", fx->threshold_len);
  }
  fclose(f);
}

static void free_fixture(Fixture *fx) {
  free(fx->x);
  free(fx->codes);
  free(fx->recon);
  free(fx->w_enc);
  free(fx->b_enc);
  free(fx->w_dec);
  free(fx->b_dec);
  free(fx->threshold);
}

/* max|got - want| / max|want| */
static double rel_err(const float *got, const double *want, size_t n) {
  double scale = 0, diff = 0;
  for (size_t i = 0; i < n; i++) {
    if (fabs(want[i]) > scale) scale = fabs(want[i]);
    double e = fabs((double)got[i] - want[i]);
    if (e > diff || e != e) diff = e;
  }
  return scale > 0 ? diff / scale : INFINITY;
}

static const double TOL = 1e-5;

/* ---------- encoding checks ---------- */

static float *encode_dense(const SaeModel *m, const float *x, size_t n, size_t h,
                           size_t block_rows) {
  size_t slen = 0;
  CHECK(sae_encode_scratch_len(m, block_rows, &slen) == SAE_OK, "scratch len"); /* 0 when the product runs unpacked */
  float *scratch = xmalloc(slen * sizeof(float));
  float *codes = xmalloc(n * h * sizeof(float));
  size_t d = 0;
  sae_model_info(m, &d, NULL, NULL, NULL, NULL);
  SaeStatus s = sae_encode(m, x, n * d, n, codes, n * h, scratch, slen);
  CHECK(s == SAE_OK, "sae_encode: %d %s", (int)s, sae_last_error());
  free(scratch);
  return codes;
}

/* The k largest positive codes of a row (ties: lower index), sorted by index. */
static size_t ref_top_k(const float *row, size_t h, size_t k, uint32_t *idx, float *val) {
  size_t len = 0;
  char *taken = calloc(h, 1);
  for (size_t t = 0; t < k; t++) {
    size_t best = h;
    for (size_t j = 0; j < h; j++) {
      if (taken[j] || !(row[j] > 0)) continue;
      if (best == h || row[j] > row[best]) best = j;
    }
    if (best == h) break;
    taken[best] = 1;
    len++;
  }
  size_t o = 0;
  for (size_t j = 0; j < h; j++)
    if (taken[j]) {
      idx[o] = (uint32_t)j;
      val[o] = row[j];
      o++;
    }
  free(taken);
  return len;
}

static void check_csr(const Fixture *fx, const SaeModel *m, const float *x,
                      const float *dense) {
  size_t n = fx->n, h = fx->h, d = fx->d;
  size_t slen = 0;
  CHECK(sae_encode_csr_scratch_len(m, 1, &slen) == SAE_OK, "csr scratch len");
  float *scratch = xmalloc(slen * sizeof(float));
  size_t cap = n * h;
  size_t *row_ptr = xmalloc((n + 1) * sizeof(size_t));
  uint32_t *idx = xmalloc(cap * sizeof(uint32_t));
  float *val = xmalloc(cap * sizeof(float));
  size_t nnz = 0;

  /* Every active feature: exactly the non-zero dense codes. */
  SaeStatus s = sae_encode_csr(m, x, n * d, n, 0, row_ptr, n + 1, idx, val, cap, scratch,
                               slen, &nnz);
  CHECK(s == SAE_OK, "%s: sae_encode_csr: %s", fx->name, sae_last_error());
  size_t want_nnz = 0, e = 0;
  int same = row_ptr[0] == 0;
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < h; j++) {
      if (dense[i * h + j] != 0) {
        want_nnz++;
        same = same && e < nnz && idx[e] == j && val[e] == dense[i * h + j];
        e++;
      }
    }
    same = same && row_ptr[i + 1] == e;
  }
  CHECK(nnz == want_nnz && same, "%s: CSR differs from the dense codes (nnz %zu vs %zu)",
        fx->name, nnz, want_nnz);

  /* Too little room: an error that says how much is needed. */
  if (want_nnz > 0) {
    size_t need = 0;
    s = sae_encode_csr(m, x, n * d, n, 0, row_ptr, n + 1, idx, val, want_nnz - 1, scratch,
                       slen, &need);
    CHECK(s == SAE_ERR_CAPACITY && need == want_nnz, "%s: capacity error (%d, need %zu)",
          fx->name, (int)s, need);
  }

  /* CSR decode of SAELens' own codes against SAELens' reconstruction. */
  {
    size_t *rp = xmalloc((n + 1) * sizeof(size_t));
    uint32_t *ix = xmalloc(cap * sizeof(uint32_t));
    float *vs = xmalloc(cap * sizeof(float));
    size_t o = 0;
    rp[0] = 0;
    for (size_t i = 0; i < n; i++) {
      for (size_t j = 0; j < h; j++)
        if (fx->codes[i * h + j] != 0) {
          ix[o] = (uint32_t)j;
          vs[o] = (float)fx->codes[i * h + j];
          o++;
        }
      rp[i + 1] = o;
    }
    float *recon = xmalloc(n * d * sizeof(float));
    s = sae_decode_csr(m, n, rp, n + 1, ix, vs, o, recon, n * d);
    double err = rel_err(recon, fx->recon, n * d);
    CHECK(s == SAE_OK && err <= TOL, "%s: decode_csr rel err %g (%s)", fx->name, err,
          sae_last_error());
    free(rp);
    free(ix);
    free(vs);
    free(recon);
  }

  /* Top-k per row, k = 1, 2, 3. */
  for (size_t k = 1; k <= 3; k++) {
    s = sae_encode_csr(m, x, n * d, n, k, row_ptr, n + 1, idx, val, n * k, scratch, slen,
                       &nnz);
    CHECK(s == SAE_OK, "%s: top-%zu: %s", fx->name, k, sae_last_error());
    uint32_t ri[8];
    float rv[8];
    int ok = row_ptr[0] == 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
      size_t len = ref_top_k(dense + i * h, h, k, ri, rv);
      for (size_t t = 0; t < len; t++, o++) ok = ok && idx[o] == ri[t] && val[o] == rv[t];
      ok = ok && row_ptr[i + 1] == o;
    }
    CHECK(ok && nnz == o, "%s: top-%zu per row differs from the reference", fx->name, k);
    if (n * k > 0) {
      size_t need = 0;
      s = sae_encode_csr(m, x, n * d, n, k, row_ptr, n + 1, idx, val, n * k - 1, scratch,
                         slen, &need);
      CHECK(s == SAE_ERR_CAPACITY && need == n * k, "%s: top-k capacity", fx->name);
    }
  }
  free(scratch);
  free(row_ptr);
  free(idx);
  free(val);
}

/* ---------- threads ---------- */

typedef struct {
  const SaeModel *m;
  const float *x;
  const float *want;
  size_t n, d, h;
  int ok;
} Job;

static void *worker(void *arg) {
  Job *j = arg;
  size_t slen = 0;
  sae_encode_scratch_len(j->m, 4, &slen);
  float *scratch = malloc(slen * sizeof(float));
  float *codes = malloc(j->n * j->h * sizeof(float));
  j->ok = scratch && codes;
  for (int it = 0; it < 50 && j->ok; it++) {
    memset(codes, 0xff, j->n * j->h * sizeof(float));
    SaeStatus s = sae_encode(j->m, j->x, j->n * j->d, j->n, codes, j->n * j->h, scratch, slen);
    j->ok = s == SAE_OK && memcmp(codes, j->want, j->n * j->h * sizeof(float)) == 0;
  }
  free(scratch);
  free(codes);
  return NULL;
}

static void check_threads(const Fixture *fx, const SaeModel *m, const float *x) {
  float *want = encode_dense(m, x, fx->n, fx->h, 4);
  pthread_t t[4];
  Job jobs[4];
  for (int i = 0; i < 4; i++) {
    jobs[i] = (Job){m, x, want, fx->n, fx->d, fx->h, 0};
    pthread_create(&t[i], NULL, worker, &jobs[i]);
  }
  int ok = 1;
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    ok = ok && jobs[i].ok;
  }
  CHECK(ok, "%s: four threads sharing one model gave different codes", fx->name);
  free(want);
}

/* ---------- per fixture ---------- */

static void check_fixture(const char *root, const char *name) {
  Fixture fx;
  read_fixture(root, name, &fx);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/tests/fixtures/saelens/%s", root, name);
  SaeModel *m = NULL;
  SaeStatus s = sae_model_load(dir, &m);
  CHECK(s == SAE_OK && m != NULL, "%s: load: %s", name, sae_last_error());
  if (s != SAE_OK) {
    free_fixture(&fx);
    return;
  }
  size_t d = 0, h = 0, k = 0;
  uint32_t arch = 99, apply = 99;
  CHECK(sae_model_info(m, &d, &h, &arch, &k, &apply) == SAE_OK, "info");
  CHECK(d == fx.d && h == fx.h && arch == fx.arch && k == fx.k && apply == fx.apply,
        "%s: info (%zu %zu %u %zu %u) vs fixture", name, d, h, arch, k, apply);

  size_t n = fx.n;
  float *x = to_f32(fx.x, n * d);
  /* Smallest scratch (one row per block) and a large one (64-row blocks). */
  float *c1 = encode_dense(m, x, n, h, 1);
  float *c64 = encode_dense(m, x, n, h, 64);
  double e1 = rel_err(c1, fx.codes, n * h), e64 = rel_err(c64, fx.codes, n * h);
  CHECK(e1 <= TOL && e64 <= TOL, "%s: codes rel err %g / %g", name, e1, e64);
  int support = 1;
  for (size_t i = 0; i < n * h; i++)
    support = support && ((c1[i] != 0) == (fx.codes[i] != 0)) &&
              ((c64[i] != 0) == (fx.codes[i] != 0));
  CHECK(support, "%s: the set of active features differs from SAELens", name);

  /* Small batches (1 row, then 3 rows at a time; a loaded model encodes these by
   * its small-batch path) against SAELens too. */
  for (size_t step = 1; step <= 3; step += 2) {
    float *cs = xmalloc(n * h * sizeof(float));
    for (size_t r0 = 0; r0 < n; r0 += step) {
      size_t rows = n - r0 < step ? n - r0 : step;
      float *c = encode_dense(m, x + r0 * d, rows, h, 1);
      memcpy(cs + r0 * h, c, rows * h * sizeof(float));
      free(c);
    }
    double e = rel_err(cs, fx.codes, n * h);
    int same = 1;
    for (size_t i = 0; i < n * h; i++) same = same && ((cs[i] != 0) == (fx.codes[i] != 0));
    CHECK(e <= TOL && same, "%s: %zu-row batches: rel err %g, support %s", name, step, e,
          same ? "same" : "differs");
    free(cs);
  }

  /* Decode SAELens' codes. */
  {
    size_t slen = 0;
    CHECK(sae_decode_scratch_len(m, 4, &slen) == SAE_OK, "decode scratch len");
    float *scratch = xmalloc(slen * sizeof(float) + 1);
    float *codes = to_f32(fx.codes, n * h);
    float *recon = xmalloc(n * d * sizeof(float));
    s = sae_decode(m, codes, n * h, n, recon, n * d, scratch, slen);
    double e = rel_err(recon, fx.recon, n * d);
    CHECK(s == SAE_OK && e <= TOL, "%s: recon rel err %g (%s)", name, e, sae_last_error());
    free(scratch);
    free(codes);
    free(recon);
  }

  check_csr(&fx, m, x, c1);
  check_threads(&fx, m, x);

  /* The same weights as a view over caller memory: the same codes, bit for bit. */
  if (fx.has_weights) {
    SaeModel view;
    SaeWeights w = {fx.d, fx.h, fx.arch, fx.apply, fx.k,
                    fx.w_enc, fx.d * fx.h, fx.b_enc, fx.h, fx.w_dec, fx.h * fx.d,
                    fx.b_dec, fx.d, fx.threshold, fx.threshold_len};
    s = sae_model_init(&view, &w);
    CHECK(s == SAE_OK, "%s: init: %s", name, sae_last_error());
    if (s == SAE_OK) {
      float *cv = encode_dense(&view, x, n, h, 1);
      CHECK(memcmp(cv, c1, n * h * sizeof(float)) == 0, "%s: view codes differ", name);
      free(cv);
      CHECK_ERR(sae_model_free(&view), SAE_ERR_BAD_HANDLE, "sae_model_init");
    }
  }
  free(x);
  free(c1);
  free(c64);
  CHECK(sae_model_free(m) == SAE_OK, "free");
  free_fixture(&fx);
}

/* ---------- bad input ---------- */

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) {
    perror(path);
    exit(2);
  }
  fputs(text, f);
  fclose(f);
}

static void check_errors(const char *root) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/tests/fixtures/saelens/standard", root);
  SaeModel *m = NULL;
  if (sae_model_load(dir, &m) != SAE_OK) {
    CHECK(0, "load standard: %s", sae_last_error());
    return;
  }
  size_t d, h;
  sae_model_info(m, &d, &h, NULL, NULL, NULL);
  const size_t n = 3;
  size_t slen;
  sae_encode_scratch_len(m, 1, &slen);
  float *x = calloc(n * d + 1, sizeof(float));
  float *codes = xmalloc(n * h * sizeof(float));
  float *scratch = xmalloc(slen * sizeof(float));
  for (size_t i = 0; i < n * d; i++) x[i] = (float)((int)(i % 7) - 3) * 0.25f;

  CHECK_ERR(sae_encode(NULL, x, n * d, n, codes, n * h, scratch, slen), SAE_ERR_NULL_POINTER,
            "model");
  CHECK_ERR(sae_encode(m, NULL, n * d, n, codes, n * h, scratch, slen), SAE_ERR_NULL_POINTER,
            "`x`");
  CHECK_ERR(sae_encode(m, x, n * d, n, NULL, n * h, scratch, slen), SAE_ERR_NULL_POINTER,
            "codes");
  CHECK_ERR(sae_encode(m, x, n * d - 1, n, codes, n * h, scratch, slen), SAE_ERR_LENGTH, "`x`");
  CHECK_ERR(sae_encode(m, x, n * d, n, codes, n * h - 1, scratch, slen), SAE_ERR_LENGTH,
            "codes");
  CHECK_ERR(sae_encode(m, x, 0, 0, codes, 0, scratch, slen), SAE_ERR_DIMENSION, "`n`");
  /* Outputs untouched on error. */
  memset(codes, 0x5a, n * h * sizeof(float));
  CHECK_ERR(sae_encode(m, x, n * d, n, codes, n * h, scratch, slen - 1),
            SAE_ERR_SCRATCH_TOO_SMALL, "scratch");
  int untouched = 1;
  for (size_t i = 0; i < n * h * sizeof(float); i++)
    untouched = untouched && ((unsigned char *)codes)[i] == 0x5a;
  CHECK(untouched, "codes written by a failing call");
  /* Overlapping and misaligned buffers. */
  CHECK_ERR(sae_encode(m, x, n * d, n, (float *)x, n * h, scratch, slen), SAE_ERR_BAD_BUFFER,
            "overlaps");
  CHECK_ERR(sae_encode(m, x, n * d, n, codes, n * h, codes, slen), SAE_ERR_BAD_BUFFER,
            "overlaps");
  CHECK_ERR(sae_encode(m, (const float *)((const char *)x + 1), n * d, n, codes, n * h,
                       scratch, slen),
            SAE_ERR_BAD_BUFFER, "aligned");
  /* Handles that are not models. */
  SaeModel junk;
  memset(&junk, 0, sizeof junk);
  CHECK_ERR(sae_encode(&junk, x, n * d, n, codes, n * h, scratch, slen), SAE_ERR_BAD_HANDLE,
            "model");
  CHECK_ERR(sae_model_free(&junk), SAE_ERR_BAD_HANDLE, "model");
  CHECK(sae_model_free(NULL) == SAE_OK, "free(NULL)");
  CHECK_ERR(sae_encode_scratch_len(m, 1, NULL), SAE_ERR_NULL_POINTER, "len");

  /* A NaN input: dense codes are NaN (documented), CSR refuses. */
  {
    size_t cl;
    sae_encode_csr_scratch_len(m, 1, &cl);
    float *cs = xmalloc(cl * sizeof(float));
    size_t rp[4], nnz = 0;
    uint32_t ix[64];
    float vs[64];
    x[1] = NAN;
    CHECK_ERR(sae_encode_csr(m, x, n * d, n, 0, rp, n + 1, ix, vs, 64, cs, cl, &nnz),
              SAE_ERR_NON_FINITE, "`x`");
    x[1] = 0.5f;
    CHECK_ERR(sae_encode_csr(m, x, n * d, n, 0, rp, n, ix, vs, 64, cs, cl, &nnz),
              SAE_ERR_LENGTH, "row_ptr");
    CHECK_ERR(sae_encode_csr(m, x, n * d, n, 0, rp, n + 1, ix, vs, 64, cs, cl, NULL),
              SAE_ERR_NULL_POINTER, "nnz");
    free(cs);
  }
  /* CSR decode: bad indices and row pointers. */
  {
    float recon[64 * 3];
    size_t rp[4] = {0, 1, 1, 2};
    uint32_t ix[2] = {0, (uint32_t)h};
    float vs[2] = {1, 1};
    CHECK_ERR(sae_decode_csr(m, n, rp, 4, ix, vs, 2, recon, n * d), SAE_ERR_OUT_OF_RANGE,
              "indices");
    size_t bad[4] = {0, 2, 1, 2};
    ix[1] = 1;
    CHECK_ERR(sae_decode_csr(m, n, bad, 4, ix, vs, 2, recon, n * d), SAE_ERR_OUT_OF_RANGE,
              "row_ptr");
    size_t past[4] = {0, 1, 1, 3};
    CHECK_ERR(sae_decode_csr(m, n, past, 4, ix, vs, 2, recon, n * d), SAE_ERR_OUT_OF_RANGE,
              "row_ptr");
    CHECK(sae_decode_csr(m, n, rp, 4, ix, vs, 2, recon, n * d) == SAE_OK, "decode_csr ok: %s",
          sae_last_error());
    CHECK_ERR(sae_decode_csr(m, n, rp, 4, ix, vs, 2, recon, n * d - 1), SAE_ERR_LENGTH,
              "recon");
  }

  /* Views over caller memory: bad weights. */
  {
    float w_enc[8 * 4] = {0}, b_enc[4] = {0}, w_dec[4 * 8] = {0}, b_dec[8] = {0},
          thr[4] = {0};
    SaeWeights good = {8, 4, SAE_ARCH_STANDARD, 1, 0, w_enc, 32, b_enc, 4, w_dec, 32,
                       b_dec, 8, NULL, 0};
    SaeModel v;
    CHECK(sae_model_init(&v, &good) == SAE_OK, "init: %s", sae_last_error());
    SaeWeights w = good;
    w.architecture = 7;
    CHECK_ERR(sae_model_init(&v, &w), SAE_ERR_OUT_OF_RANGE, "architecture");
    w = good;
    w.architecture = SAE_ARCH_TOPK;
    w.k = 0;
    CHECK_ERR(sae_model_init(&v, &w), SAE_ERR_OUT_OF_RANGE, "`k`");
    w = good;
    w.architecture = SAE_ARCH_JUMPRELU;
    CHECK_ERR(sae_model_init(&v, &w), SAE_ERR_LENGTH, "threshold");
    w.threshold = thr;
    w.threshold_len = 4;
    CHECK(sae_model_init(&v, &w) == SAE_OK, "jumprelu init: %s", sae_last_error());
    w = good;
    w.w_dec_len = 31;
    CHECK_ERR(sae_model_init(&v, &w), SAE_ERR_LENGTH, "W_dec"); /* SAELens tensor names */
    w = good;
    w.b_enc = NULL;
    CHECK_ERR(sae_model_init(&v, &w), SAE_ERR_NULL_POINTER, "b_enc");
    w = good;
    w.d_in = 0;
    w.w_enc_len = w.w_dec_len = w.b_dec_len = 0;
    CHECK_ERR(sae_model_init(&v, &w), SAE_ERR_DIMENSION, "`d`");
    w = good;
    w.d_in = (size_t)1 << 62;
    w.d_sae = (size_t)1 << 62;
    CHECK_ERR(sae_model_init(&v, &w), SAE_ERR_OVERFLOW, "overflow");
    CHECK_ERR(sae_model_init(NULL, &good), SAE_ERR_NULL_POINTER, "model");
    CHECK_ERR(sae_model_init(&v, NULL), SAE_ERR_NULL_POINTER, "weights");
  }

  /* Loading: missing folders and unsupported files. */
  {
    SaeModel *o = (SaeModel *)&junk;
    CHECK_ERR(sae_model_load("/definitely/not/here", &o), SAE_ERR_NOT_FOUND, "not found");
    CHECK(o == NULL, "out not NULL after a failed load");
    CHECK_ERR(sae_model_load(NULL, &o), SAE_ERR_NULL_POINTER, "dir");
    CHECK_ERR(sae_model_load(dir, NULL), SAE_ERR_NULL_POINTER, "out");
    char tmpl[] = "/tmp/saek-capi-XXXXXX";
    char *t = mkdtemp(tmpl);
    if (t) {
      char p[4200];
      snprintf(p, sizeof p, "%s/cfg.json", t);
      write_file(p, "{\"d_in\": 8, \"d_sae\": 32, \"architecture\": \"gated\", "
                    "\"metadata\": {\"sae_lens_version\": \"6.0.0\"}}");
      CHECK_ERR(sae_model_load(t, &o), SAE_ERR_FORMAT, "architecture");
      write_file(p, "{\"d_in\": 8, \"d_sae\": 32, \"architecture\": \"standard\", "
                    "\"metadata\": {\"sae_lens_version\": \"6.0.0\"}}");
      CHECK_ERR(sae_model_load(t, &o), SAE_ERR_NOT_FOUND, "sae_weights.safetensors");
      char w[4200];
      snprintf(w, sizeof w, "%s/sae_weights.safetensors", t);
      write_file(w, "garbage");
      CHECK_ERR(sae_model_load(t, &o), SAE_ERR_FORMAT, "sae_weights.safetensors");
      unlink(w);
      unlink(p);
      rmdir(t);
    }
  }
  free(x);
  free(codes);
  free(scratch);
  sae_model_free(m);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s REPO_ROOT\n", argv[0]);
    return 2;
  }
  const char *root = argv[1];
  CHECK(strcmp(sae_last_error(), "") == 0, "no error yet");
  char path[4096];
  snprintf(path, sizeof path, "%s/capi/tests/c/fixtures/LIST", root);
  FILE *list = fopen(path, "r");
  if (!list) {
    perror(path);
    return 2;
  }
  char name[64];
  int count = 0;
  while (fscanf(list, "%63s", name) == 1) {
    check_fixture(root, name);
    count++;
  }
  fclose(list);
  CHECK(count >= 8, "only %d fixtures", count);
  check_errors(root);
  printf("capi: %d SAELens fixtures checked\n", count);
  printf("capi: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
