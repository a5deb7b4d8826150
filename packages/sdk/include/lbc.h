/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * lbc.h: the implicit prelude of every tslcc program (pylcc's lbc.h, reworked).
 *
 * The SDK puts `#include "lbc.h"` in front of every program, so a user may write it or not.
 * Every map macro expands to a BTF-style `SEC(".maps")` definition: the key and value
 * types land in the object's BTF and the SDK decodes them from there, whatever they are
 * (structs, arrays, pointers). Nothing is ever found by scanning the source.
 */
#ifndef __LBC_H
#define __LBC_H

#define LBC_VERSION 1

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "lbc_compat.h" /* what libbpf headers after 1.1 added, under #ifndef */

/* vmlinux.h already has u8..s64 from the kernel; these repeat them identically so a
 * program keeps compiling against a vmlinux.h that lacks them. */
typedef unsigned char u8;
typedef signed char s8;
typedef unsigned short u16;
typedef signed short s16;
typedef unsigned int u32;
typedef signed int s32;
typedef unsigned long long u64;
typedef signed long long s64;

/* BPF_F_CURRENT_CPU, BPF_F_FAST_STACK_CMP and BPF_F_USER_STACK are enumerators of
 * vmlinux.h (enum bpf_*_flags); they are used here, not redefined. */
#define KERN_STACKID_FLAGS (0 | BPF_F_FAST_STACK_CMP)
#define USER_STACKID_FLAGS (0 | BPF_F_FAST_STACK_CMP | BPF_F_USER_STACK)
#define LBC_STACK_DEPTH 127 /* PERF_MAX_STACK_DEPTH */

/* _(P): read kernel memory at P (CO-RE relocated when P is a member access). */
#define _(P)                                                  \
	({                                                        \
		typeof(P) __lbc_val = 0;                              \
		bpf_probe_read_kernel(&__lbc_val, sizeof(__lbc_val), &(P)); \
		__lbc_val;                                            \
	})

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ntohs(x) ((u16)__builtin_bswap16((u16)(x)))
#define ntohl(x) ((u32)__builtin_bswap32((u32)(x)))
#define ntohll(x) ((u64)__builtin_bswap64((u64)(x)))
#else
#define ntohs(x) ((u16)(x))
#define ntohl(x) ((u32)(x))
#define ntohll(x) ((u64)(x))
#endif
#define htons(x) ntohs(x)
#define htonl(x) ntohl(x)
#define htonll(x) ntohll(x)

#ifdef LBC_DEBUG
#define lbc_debug(fmt, ...) bpf_printk(fmt, ##__VA_ARGS__)
#else
#define lbc_debug(fmt, ...) do { } while (0)
#endif

/*
 * Event type carrier. A perf event array's value is an fd, so its BTF cannot name the
 * event type. Each event map therefore leaves a pointer-to-array variable in the
 * ".lbc.types" section: `T (*__lbc_event_NAME)[N]`. The variable is never referenced by
 * code and its section is not loaded by libbpf, but as a global with external linkage it
 * survives -O2 with its full BTF, so the SDK finds T (and N) by the map's name.
 */
#define __LBC_EVENT_TYPE(name, T, n) T (*__lbc_event_##name)[n] SEC(".lbc.types")

/* LBC_EVENT_TYPE(map, T): records of event map `map` (declared any way, e.g. libbpf-style
 * with __uint(type, BPF_MAP_TYPE_RINGBUF)) are of type T; the SDK decodes them as T. Put it
 * after T is complete. A struct used only as a local variable leaves no BTF: this line is
 * what makes it findable. */
#define LBC_EVENT_TYPE(map, T) __LBC_EVENT_TYPE(map, T, 0)

/* LBC_PERF_OUTPUT(name, T, pages): perf event array carrying T; pages per CPU for the
 * consumer's ring (rounded up to a power of two). */
#define LBC_PERF_OUTPUT(name, T, pages)                          \
	struct {                                                     \
		__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);             \
		__uint(key_size, sizeof(int));                           \
		__uint(value_size, sizeof(int));                         \
	} name SEC(".maps");                                         \
	__LBC_EVENT_TYPE(name, T, pages)

/* LBC_RINGBUF(name, T, bytes): BPF ring buffer carrying T (kernel 5.8+). bytes is rounded
 * up to a power-of-two number of pages by the SDK. Emit with lbc_ringbuf_output() or
 * lbc_ringbuf_reserve() so a full buffer is counted as lost instead of vanishing. */
#define LBC_RINGBUF(name, T, bytes)                              \
	struct {                                                     \
		__uint(type, BPF_MAP_TYPE_RINGBUF);                      \
		__uint(max_entries, bytes);                              \
	} name SEC(".maps");                                         \
	__LBC_EVENT_TYPE(name, T, 1);                                \
	u64 __lbc_drops_##name

#define lbc_ringbuf_output(name, data, size)                     \
	({                                                           \
		long __lbc_r = bpf_ringbuf_output(&name, data, size, 0); \
		if (__lbc_r) __sync_fetch_and_add(&__lbc_drops_##name, 1); \
		__lbc_r;                                                 \
	})
#define lbc_ringbuf_reserve(name, size)                          \
	({                                                           \
		void *__lbc_p = bpf_ringbuf_reserve(&name, size, 0);     \
		if (!__lbc_p) __sync_fetch_and_add(&__lbc_drops_##name, 1); \
		__lbc_p;                                                 \
	})
#define lbc_perf_output(ctx, name, ptr) \
	bpf_perf_event_output(ctx, &name, BPF_F_CURRENT_CPU, ptr, sizeof(*(ptr)))

#define __LBC_MAP(name, maptype, K, V, n) \
	struct {                              \
		__uint(type, maptype);            \
		__uint(max_entries, n);           \
		__type(key, K);                   \
		__type(value, V);                 \
	} name SEC(".maps")

#define LBC_HASH(name, K, V, n) __LBC_MAP(name, BPF_MAP_TYPE_HASH, K, V, n)
#define LBC_LRU_HASH(name, K, V, n) __LBC_MAP(name, BPF_MAP_TYPE_LRU_HASH, K, V, n)
#define LBC_PERCPU_HASH(name, K, V, n) __LBC_MAP(name, BPF_MAP_TYPE_PERCPU_HASH, K, V, n)
#define LBC_LRU_PERCPU_HASH(name, K, V, n) __LBC_MAP(name, BPF_MAP_TYPE_LRU_PERCPU_HASH, K, V, n)
#define LBC_ARRAY(name, K, V, n) __LBC_MAP(name, BPF_MAP_TYPE_ARRAY, K, V, n)
#define LBC_PERCPU_ARRAY(name, K, V, n) __LBC_MAP(name, BPF_MAP_TYPE_PERCPU_ARRAY, K, V, n)

/* LBC_STACK(name, n): up to n stack traces of LBC_STACK_DEPTH frames each. */
#define LBC_STACK(name, n)                                        \
	struct {                                                      \
		__uint(type, BPF_MAP_TYPE_STACK_TRACE);                   \
		__uint(key_size, sizeof(u32));                            \
		__uint(value_size, LBC_STACK_DEPTH * sizeof(u64));        \
		__uint(max_entries, n);                                   \
	} name SEC(".maps")

/* Histograms. The map's name prefix tells the SDK how to label the slots:
 * LBC_HIST2: 64 power-of-two slots, slot k counts values in [2^k, 2^(k+1)) (slot 0: 0..1).
 * LBC_HIST10: 20 power-of-ten slots, slot k counts values in [10^k, 10^(k+1)) (slot 0: 0..9). */
struct __lbc_hist2 { u64 slots[64]; };
struct __lbc_hist10 { u64 slots[20]; };
#define LBC_HIST2(name) __LBC_MAP(name, BPF_MAP_TYPE_ARRAY, u32, u64, 64); \
	struct __lbc_hist2 *__lbc_hist2_##name SEC(".lbc.types")
#define LBC_HIST10(name) __LBC_MAP(name, BPF_MAP_TYPE_ARRAY, u32, u64, 20); \
	struct __lbc_hist10 *__lbc_hist10_##name SEC(".lbc.types")

static __always_inline u32 lbc_log2(u32 v)
{
	u32 shift, r;
	r = (v > 0xFFFF) << 4; v >>= r;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline u32 lbc_log2l(u64 v)
{
	u32 hi = v >> 32;
	return hi ? lbc_log2(hi) + 32 : lbc_log2((u32)v);
}

static __always_inline u32 lbc_log10l(u64 v)
{
	u32 r = 0;
#pragma unroll
	for (int i = 0; i < 19; i++) {
		if (v < 10) break;
		v /= 10;
		r++;
	}
	return r;
}

static __always_inline void hist2_push(void *map, u64 v)
{
	u32 k = lbc_log2l(v);
	u64 *slot = bpf_map_lookup_elem(map, &k);
	if (slot) __sync_fetch_and_add(slot, 1);
}

static __always_inline void hist10_push(void *map, u64 v)
{
	u32 k = lbc_log10l(v);
	u64 *slot = bpf_map_lookup_elem(map, &k);
	if (slot) __sync_fetch_and_add(slot, 1);
}

#endif /* __LBC_H */
