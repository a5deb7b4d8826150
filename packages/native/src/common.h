// Shared helpers for the tslcc native layer. The layer validates nothing and decides
// nothing: it calls libbpf, checks the result, and throws an Error that carries the errno,
// the libbpf call that failed and libbpf's own log lines, so the SDK can write the message.
#pragma once
#include <napi.h>
#include <string>
#include <vector>

struct btf;

namespace tslcc {

// libbpf's log lines since the last BeginLog(); captured by a print callback.
void BeginLog();
std::string TakeLog();

// Throws a JS Error with .errno (positive), .op (the libbpf/syscall name) and .libbpfLog.
[[noreturn]] void ThrowErrno(Napi::Env env, const char *op, int err, const std::string &subject = "");

Napi::Object InitObject(Napi::Env env, Napi::Object exports);
Napi::Object InitBuffers(Napi::Env env, Napi::Object exports);
Napi::Object InitBtf(Napi::Env env, Napi::Object exports);
Napi::Object InitSys(Napi::Env env, Napi::Object exports);

// Converts a libbpf struct btf into plain JS data (see index.d.ts: BtfType).
Napi::Array BtfToJs(Napi::Env env, const struct btf *btf);

}  // namespace tslcc
