/* Which instruction sets that -march=native enables can this machine execute?
 *
 * Compiled by native/build.sh with the flags llama.cpp's GGML_NATIVE uses
 * (-march=native), so the compiler's own macros say what ggml would emit.
 * Virtual machines can advertise an extension in CPUID that the hypervisor
 * does not let a guest execute (AMX is the case seen here: SIGILL).
 *
 *   isa_probe --list      one line per extension -march=native enables:
 *                         NAME FLAGS-THAT-TURN-IT-OFF
 *   isa_probe NAME        executes an instruction of NAME; exit 0 when it ran
 *                         (SIGILL kills the process: build.sh runs each in a child)
 *
 * AMX is probed by amx_probe.cpp, in C++ as ggml's AMX kernels are written.
 */
#include <immintrin.h>
#include <stdio.h>
#include <string.h>

static volatile float sink_f;
static volatile int sink_i;
static volatile float in_f = 1.5f;
static volatile int in_i = 3;

#ifdef __AVX2__
static int run_avx2(void) {
    __m256i a = _mm256_set1_epi32(in_i);
    sink_i = _mm256_extract_epi32(_mm256_add_epi32(a, a), 0);
    return 0;
}
#endif
#ifdef __FMA__
static int run_fma(void) {
    __m256 a = _mm256_set1_ps(in_f);
    sink_f = _mm256_cvtss_f32(_mm256_fmadd_ps(a, a, a));
    return 0;
}
#endif
#ifdef __F16C__
static int run_f16c(void) {
    __m128i h = _mm_set1_epi16((short)in_i);
    sink_f = _mm256_cvtss_f32(_mm256_cvtph_ps(h));
    return 0;
}
#endif
#ifdef __AVX512F__
static int run_avx512f(void) {
    __m512 a = _mm512_set1_ps(in_f);
    sink_f = _mm512_reduce_add_ps(_mm512_add_ps(a, a));
    return 0;
}
#endif
#ifdef __AVX512BW__
static int run_avx512bw(void) {
    __m512i a = _mm512_set1_epi8((char)in_i);
    sink_i = _mm512_reduce_add_epi32(_mm512_add_epi8(a, a));
    return 0;
}
#endif
#ifdef __AVX512VNNI__
static int run_avx512vnni(void) {
    __m512i a = _mm512_set1_epi32(in_i);
    sink_i = _mm512_reduce_add_epi32(_mm512_dpbusd_epi32(a, a, a));
    return 0;
}
#endif
#ifdef __AVX512BF16__
static int run_avx512bf16(void) {
    __m512 a = _mm512_set1_ps(in_f);
    __m512bh b = _mm512_cvtne2ps_pbh(a, a);
    sink_f = _mm512_reduce_add_ps(_mm512_dpbf16_ps(a, b, b));
    return 0;
}
#endif
#ifdef __AVX512FP16__
static int run_avx512fp16(void) {
    __m512h a = _mm512_set1_ph((_Float16)in_f);
    sink_f = (float)_mm512_reduce_add_ph(_mm512_add_ph(a, a));
    return 0;
}
#endif
#ifdef __AVXVNNI__
static int run_avxvnni(void) {
    __m256i a = _mm256_set1_epi32(in_i);
    sink_i = _mm256_extract_epi32(_mm256_dpbusd_avx_epi32(a, a, a), 0);
    return 0;
}
#endif
struct isa {
    const char *name;
    const char *off_flags;   /* what turns it off in a build */
    int (*run)(void);
};

static const struct isa ISAS[] = {
#ifdef __AVX2__
    {"avx2", "-mno-avx2", run_avx2},
#endif
#ifdef __FMA__
    {"fma", "-mno-fma", run_fma},
#endif
#ifdef __F16C__
    {"f16c", "-mno-f16c", run_f16c},
#endif
#ifdef __AVX512F__
    {"avx512f", "-mno-avx512f", run_avx512f},
#endif
#ifdef __AVX512BW__
    {"avx512bw", "-mno-avx512bw", run_avx512bw},
#endif
#ifdef __AVX512VNNI__
    {"avx512vnni", "-mno-avx512vnni", run_avx512vnni},
#endif
#ifdef __AVX512BF16__
    {"avx512bf16", "-mno-avx512bf16", run_avx512bf16},
#endif
#ifdef __AVX512FP16__
    {"avx512fp16", "-mno-avx512fp16", run_avx512fp16},
#endif
#ifdef __AVXVNNI__
    {"avxvnni", "-mno-avxvnni", run_avxvnni},
#endif
    {NULL, NULL, NULL},
};

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s --list | NAME\n", argv[0]);
        return 2;
    }
    for (const struct isa *i = ISAS; i->name; i++) {
        if (strcmp(argv[1], "--list") == 0) {
            printf("%s %s\n", i->name, i->off_flags);
        } else if (strcmp(argv[1], i->name) == 0) {
            return i->run();
        }
    }
    return strcmp(argv[1], "--list") == 0 ? 0 : 2;
}
