/* <bpf/usdt.bpf.h> includes <linux/errno.h>, which includes <asm/errno.h>. With -target bpf
 * clang searches no multiarch directory (/usr/include/x86_64-linux-gnu), so that include
 * fails; this stands in for it. Every arch BPF CO-RE targets here (x86, arm64, riscv,
 * s390, loongarch; powerpc only adds EDEADLOCK) uses the generic numbers. */
#include <asm-generic/errno.h>
