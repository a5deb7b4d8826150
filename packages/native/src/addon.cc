#include "common.h"
#include <bpf/libbpf.h>
#include <cstdarg>
#include <cstring>
#include <cstdio>

namespace tslcc {

static std::string g_log;
static bool g_echo = false;

// libbpf reports everything (verifier logs on failure, missing BTF, attach errors) through
// this callback; we keep the lines so an error can carry them, and echo them under
// TSLCC_LIBBPF_DEBUG for debugging libbpf itself.
static int PrintCallback(enum libbpf_print_level level, const char *fmt, va_list args) {
  if (level == LIBBPF_DEBUG && !g_echo) return 0;
  char buf[4096];
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(buf, sizeof buf, fmt, copy);
  va_end(copy);
  if (n >= (int)sizeof buf) {
    std::vector<char> big(n + 1);
    vsnprintf(big.data(), big.size(), fmt, args);
    g_log.append(big.data(), n);
  } else if (n > 0) {
    g_log.append(buf, n);
  }
  if (g_log.size() > (16u << 20)) g_log.erase(0, g_log.size() - (8u << 20));
  if (g_echo) fputs(buf, stderr);
  return 0;
}

void BeginLog() { g_log.clear(); }
std::string TakeLog() {
  std::string s;
  s.swap(g_log);
  return s;
}

void ThrowErrno(Napi::Env env, const char *op, int err, const std::string &subject) {
  if (err < 0) err = -err;
  std::string msg = std::string(op);
  if (!subject.empty()) msg += " " + subject;
  msg += ": ";
  msg += strerror(err);
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("op", Napi::String::New(env, op));
  e.Set("libbpfLog", Napi::String::New(env, TakeLog()));
  throw e;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  const char *dbg = getenv("TSLCC_LIBBPF_DEBUG");
  g_echo = dbg && *dbg && strcmp(dbg, "0") != 0;
  libbpf_set_print(PrintCallback);
  libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
  InitObject(env, exports);
  InitBuffers(env, exports);
  InitBtf(env, exports);
  InitSys(env, exports);
  return exports;
}

}  // namespace tslcc

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return tslcc::Init(env, exports); }
NODE_API_MODULE(tslcc_native, InitModule)
