// RO_CPU_CLONES: compile a CPU loop for AVX-512, AVX2 and baseline x86-64 and pick one
// at load time, so one wheel runs everywhere and still uses the widest vectors.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RO_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RO_CPU_CLONES
#endif
