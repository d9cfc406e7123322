#!/usr/bin/env python3
"""The import graph between the files of src/, and its cycles: exits 1 if there is one.

An edge A -> B is a path in A (a `use`, or an inline `crate::`/`super::`/child-module path)
that names an item of B. `mod x;` declarations and test modules do not count. A file's
`mod.rs` that only declares and re-exports its children, with the children importing each
other by path and never their parent, keeps a module free of cycles. A path through another
crate that the crate root re-exports under a name (`pub use buffstreams_frame as frame;`, so
`crate::frame::Codec`) leads out of the crate: no edge.

Usage: python3 ci/check_imports.py [src]   (CI runs it on src and on frame/src)"""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else "src"
files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith(".rs"):
            p = os.path.join(d, f)
            files[p] = open(p).read()
def modpath(p):
    rel = os.path.relpath(p, root)[:-3].split("/")
    if rel[-1] in ("mod", "lib", "main"): rel = rel[:-1]
    return rel
mods = {tuple(modpath(p)): p for p in files if not p.startswith(os.path.join(root, "bin"))}
# Other crates the root re-exports as a module: `pub use other_crate as name;`.
root_src = files.get(mods.get((), ""), "")
extern_aliases = {alias for krate, alias in
                  re.findall(r"^\s*pub\s+use\s+(\w+)\s+as\s+(\w+)\s*;", root_src, re.M)
                  if krate not in ("crate", "self", "super")}
def resolve(parts):
    # longest prefix that is a module file
    for i in range(len(parts), -1, -1):
        if tuple(parts[:i]) in mods: return mods[tuple(parts[:i])]
    return None
edges = {}
use_re = re.compile(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?use\s+([^;]+);", re.M)
def expand(s):
    s = s.strip()
    m = re.match(r"^(.*?)::\{(.*)\}$", s, re.S)
    if not m: return [s]
    pre, body = m.group(1), m.group(2)
    out, depth, cur = [], 0, ""
    for ch in body:
        if ch == "{" : depth += 1
        if ch == "}" : depth -= 1
        if ch == "," and depth == 0:
            out.append(cur); cur = ""
        else: cur += ch
    if cur.strip(): out.append(cur)
    res = []
    for o in out:
        o = o.strip()
        if o == "self": res.append(pre)
        else: res += expand(pre + "::" + o)
    return res
for p, src in files.items():
    if p.startswith(os.path.join(root, "bin")): continue
    # drop test modules
    src = re.split(r"#\[cfg\([^\]]*\btest\b[^\]]*\)\]\s*(?:pub(?:\([a-z]+\))?\s+)?mod \w+\s*\{", src)[0]
    me = modpath(p)
    is_mod = os.path.basename(p) in ("mod.rs", "lib.rs")
    here = me if is_mod else me[:-1] + [me[-1]]
    children = set(re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+(\w+)\s*;", src, re.M))
    paths = [pth for m in use_re.finditer(src) for pth in expand(m.group(1))]
    body = use_re.sub("", src)
    body = re.sub(r"//[^\n]*", "", body)
    paths += re.findall(r"\b((?:crate|super)(?:::\w+)+)", body)
    paths += [x for x in re.findall(r"(?<![:\w])(\w+(?:::\w+)+)", body) if x.split("::")[0] in children]
    for path in paths:
        if True:
            path = re.sub(r"\s+as\s+\w+$", "", path.strip())
            parts = path.split("::")
            if parts[0] == "crate": target = parts[1:]
            elif parts[0] in ("super", "self"):
                base = list(here)
                while parts and parts[0] in ("super", "self"):
                    if parts[0] == "super": base = base[:-1]
                    parts = parts[1:]
                target = base + parts
            elif parts[0] in children: target = list(here) + parts
            else: continue
            if target and target[0] in extern_aliases: continue
            t = resolve(target)
            if t and t != p: edges.setdefault(p, set()).add(t)
# Tarjan SCC
idx, low, st, on, out, c = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: out.append(sorted(comp))
for v in list(files):
    if v not in idx and not v.startswith(os.path.join(root,"bin")): sc(v)
for comp in out:
    print(len(comp), "files in a cycle:")
    for f in comp:
        print("   ", f, "->", sorted(x for x in edges.get(f, ()) if x in comp))
print("cycles:", len(out))
sys.exit(1 if out else 0)
