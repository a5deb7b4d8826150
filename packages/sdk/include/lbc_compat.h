/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * lbc_compat.h: what libbpf's BPF headers gained after 1.1 (the version Debian 12 ships)
 * and real CO-RE programs (libbpf-tools, bpftool-generated skeleton users) rely on.
 * Included by lbc.h after <bpf/bpf_helpers.h>, <bpf/bpf_core_read.h> and
 * <bpf/bpf_tracing.h>; every definition sits under #ifndef, so newer system headers win.
 * Written from libbpf's documented behaviour, not copied from its headers.
 */
#ifndef __LBC_COMPAT_H
#define __LBC_COMPAT_H

/* ---- bpf_tracing.h (libbpf 1.2) ------------------------------------------------------ */

/* A uprobe's context is the same struct pt_regs as a kprobe's: same argument unpacking. */
#ifndef BPF_UPROBE
#define BPF_UPROBE(name, args...) BPF_KPROBE(name, ##args)
#endif
#ifndef BPF_URETPROBE
#define BPF_URETPROBE(name, args...) BPF_KRETPROBE(name, ##args)
#endif

/* The sixth argument register (libbpf 1.2), so BPF_KPROBE/BPF_UPROBE take six arguments
 * on x86-64 (r9) and arm64 (x5). Both register names are the same in vmlinux.h's and
 * userspace's pt_regs. */
#if !defined(PT_REGS_PARM6) && (defined(__TARGET_ARCH_x86) || defined(__TARGET_ARCH_arm64))
#if defined(__TARGET_ARCH_x86)
#define __LBC_PT_PARM6_REG r9
#else
#define __LBC_PT_PARM6_REG regs[5]
#endif
#define PT_REGS_PARM6(x) (__PT_REGS_CAST(x)->__LBC_PT_PARM6_REG)
#define PT_REGS_PARM6_CORE(x) BPF_CORE_READ(__PT_REGS_CAST(x), __LBC_PT_PARM6_REG)
#endif
#if defined(PT_REGS_PARM6) && !defined(___bpf_kprobe_args6)
#define ___bpf_kprobe_args6(x, args...) ___bpf_kprobe_args5(args), (void *)PT_REGS_PARM6(ctx)
#endif

/* ---- bpf_helpers.h (libbpf 1.2 - 1.5) ------------------------------------------------ */

/* Pointer tags the verifier reads from BTF (kernel 6.4+ for untrusted/percpu, 6.12 uptr). */
#ifndef __kptr_untrusted
#define __kptr_untrusted __attribute__((btf_type_tag("kptr_untrusted")))
#endif
#ifndef __percpu_kptr
#define __percpu_kptr __attribute__((btf_type_tag("percpu_kptr")))
#endif
#ifndef __uptr
#define __uptr __attribute__((btf_type_tag("uptr")))
#endif

/* Global (non-static) subprogram argument annotations (kernel 6.8+). */
#ifndef __arg_ctx
#define __arg_ctx __attribute__((btf_decl_tag("arg:ctx")))
#endif
#ifndef __arg_nonnull
#define __arg_nonnull __attribute__((btf_decl_tag("arg:nonnull")))
#endif
#ifndef __arg_nullable
#define __arg_nullable __attribute__((btf_decl_tag("arg:nullable")))
#endif
#ifndef __arg_trusted
#define __arg_trusted __attribute__((btf_decl_tag("arg:trusted")))
#endif
#ifndef __arg_arena
#define __arg_arena __attribute__((btf_decl_tag("arg:arena")))
#endif

/* bpf_ksym_exists(sym): whether a __weak __ksym (variable or kfunc) resolved at load time.
 * The static assertion catches a declaration without __weak, where the compiler would fold
 * the test to true and the program would fail to load on kernels without the symbol. */
#ifndef bpf_ksym_exists
#define bpf_ksym_exists(sym) ({                                                    \
	_Static_assert(!__builtin_constant_p(!!sym), #sym " must be declared __weak"); \
	!!sym;                                                                     \
})
#endif

/* A map attribute wider than int (libbpf 1.3): an enumerator carries the value. */
#ifndef __ulong
#define __ulong(name, val) enum { ___bpf_concat(__lbc_ulong_, __COUNTER__) = val } name
#endif

/* Open-coded iterators (kernel 6.4+): bpf_for(i, start, end), bpf_repeat(n) and
 * bpf_for_each(type, cur, args...) over the bpf_iter_<type>_{new,next,destroy} kfuncs.
 * vmlinux.h of a kernel with kfunc tags declares these kfuncs too; the declarations agree. */
#ifndef bpf_for_each
struct bpf_iter_num;
extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __weak __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __weak __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __weak __ksym;

/* The dummy pointer's initializer runs _new() exactly once and names _destroy() so that
 * clang 14 emits its BTF (a cleanup() attribute alone does not). */
#define bpf_for_each(type, cur, args...)                                                   \
	for (struct bpf_iter_##type __lbc_it                                               \
		     __attribute__((aligned(8), cleanup(bpf_iter_##type##_destroy))),      \
	     *__lbc_once __attribute__((unused)) =                                         \
		     (bpf_iter_##type##_new(&__lbc_it, ##args),                            \
		      (void)bpf_iter_##type##_destroy, (void *)0);                         \
	     ((cur) = bpf_iter_##type##_next(&__lbc_it));)

/* The bounds test after each step lets the verifier know start <= i < end. */
#define bpf_for(i, start, end)                                                             \
	for (struct bpf_iter_num __lbc_it                                                  \
		     __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))),           \
	     *__lbc_once __attribute__((unused)) =                                         \
		     (bpf_iter_num_new(&__lbc_it, (start), (end)),                         \
		      (void)bpf_iter_num_destroy, (void *)0);                              \
	     ({                                                                            \
		     int *__lbc_i = bpf_iter_num_next(&__lbc_it);                          \
		     (__lbc_i && ((i) = *__lbc_i, (i) >= (start) && (i) < (end)));         \
	     });)

#define bpf_repeat(n)                                                                      \
	for (struct bpf_iter_num __lbc_it                                                  \
		     __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))),           \
	     *__lbc_once __attribute__((unused)) =                                         \
		     (bpf_iter_num_new(&__lbc_it, 0, (n)),                                 \
		      (void)bpf_iter_num_destroy, (void *)0);                              \
	     bpf_iter_num_next(&__lbc_it);)
#endif /* bpf_for_each */

/* ---- bpf_core_read.h (libbpf 1.3) ---------------------------------------------------- */

/* bpf_core_cast(ptr, type): a read-only, verifier-tracked `type *` view of ptr through the
 * bpf_rdonly_cast kfunc (kernel 6.2+); fields read through it are plain loads. */
#ifndef bpf_core_cast
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __weak __ksym;
#define bpf_core_cast(ptr, type) ((type *)bpf_rdonly_cast((ptr), bpf_core_type_id_kernel(type)))
#endif

#endif /* __LBC_COMPAT_H */
