#!/usr/bin/env python3
"""check-prom-text: a strict checker of the Prometheus text exposition
format (version 0.0.4), for tests (e2e metrics: what peerd serves at
/metrics). Stricter than the format where peervol's conventions are:

  - every line ends in a newline; no blank lines, and no comments other
    than '# HELP name text' and '# TYPE name type'
  - names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
    [a-zA-Z_][a-zA-Z0-9_]* (not __*), label values are quoted with only
    \\\\, \\" and \\n escaped; a value parses as a float (NaN, +Inf, -Inf),
    an optional timestamp as an integer
  - every family has one HELP and one TYPE, both before its samples; the
    samples of a family stand together; no series twice
  - a counter's name ends in _total and its values are >= 0; a
    histogram's samples are NAME_bucket (with le), NAME_sum and NAME_count;
    per label set its buckets' le rise, their counts are cumulative (never
    fall), the last is le="+Inf" and equals NAME_count, and NAME_sum is
    there
  - peervol_ families only, when --prefix peervol_ is given

usage: check-prom-text.py [--prefix P] FILE
         exit 0 and "ok: N families, M samples" on stderr, or exit 1 with
         one line per problem ("line N: ...")
       check-prom-text.py [--prefix P] --sum 'NAME{label="value",...}'... FILE
         checks FILE, then prints for each --sum (one a line) the sum of
         the samples of NAME whose labels include those given (0 if none)
"""
import math
import re
import sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def parse_float(s):
    if s in ("NaN", "+Inf", "-Inf", "Inf"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise ValueError("not a number: %r" % s)
    return float(s)


def parse_labels(s, i):
    """Labels from s[i] == '{' to the closing '}': (dict, index after it)."""
    labels = {}
    i += 1
    while True:
        if s[i:i + 1] == "}":
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise ValueError("bad label name at column %d" % (i + 1))
        name = m.group(0)
        if name.startswith("__"):
            raise ValueError("label name %s is reserved" % name)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ValueError("label %s: expected =\"" % name)
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise ValueError("label %s: unterminated value" % name)
            c = s[i]
            if c == "\\":
                e = s[i + 1:i + 2]
                if e not in ("\\", '"', "n"):
                    raise ValueError("label %s: bad escape \\%s" % (name, e))
                val.append("\n" if e == "n" else e)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise ValueError("label %s: raw newline" % name)
            else:
                val.append(c)
                i += 1
        if name in labels:
            raise ValueError("label %s twice" % name)
        labels[name] = "".join(val)
        if s[i:i + 1] == ",":
            i += 1
        elif s[i:i + 1] != "}":
            raise ValueError("expected , or } after label %s" % name)


def family_of(sample, types):
    """The family a sample name belongs to, or None."""
    if sample in types and types[sample] != "histogram":
        return sample
    for suffix in ("_bucket", "_sum", "_count"):
        if sample.endswith(suffix):
            base = sample[: -len(suffix)]
            if types.get(base) == "histogram" or (
                    types.get(base) == "summary" and suffix != "_bucket"):
                return base
    return None


def check(text, prefix):
    errors = []
    samples = []  # (family, name, labels, value)
    helps, types = {}, {}
    done = set()  # families whose samples are over
    current = None
    seen = set()
    sampled = set()  # families with samples so far
    if text and not text.endswith("\n"):
        errors.append("the text does not end in a newline")
    for n, line in enumerate(text.split("\n")[:-1] if text else [], 1):
        try:
            if not line:
                raise ValueError("blank line")
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) < 3 or parts[0] != "#" or parts[1] not in ("HELP", "TYPE"):
                    raise ValueError("a comment other than HELP or TYPE")
                kind, name = parts[1], parts[2]
                if not NAME.fullmatch(name):
                    raise ValueError("bad metric name %r" % name)
                if name in done or name in sampled or (
                        current and current != name and name in types):
                    raise ValueError("%s for %s after its samples" % (kind, name))
                if kind == "HELP":
                    if name in helps:
                        raise ValueError("second HELP for %s" % name)
                    helps[name] = parts[3] if len(parts) > 3 else ""
                else:
                    t = parts[3] if len(parts) > 3 else ""
                    if name in types:
                        raise ValueError("second TYPE for %s" % name)
                    if t not in TYPES:
                        raise ValueError("unknown type %r for %s" % (t, name))
                    types[name] = t
                if current and current != name:
                    done.add(current)
                current = name
                continue
            m = NAME.match(line)
            if not m:
                raise ValueError("bad metric name")
            name, i = m.group(0), m.end()
            labels = {}
            if line[i:i + 1] == "{":
                labels, i = parse_labels(line, i)
            if line[i:i + 1] != " ":
                raise ValueError("expected a space before the value")
            rest = line[i + 1:].split(" ")
            if len(rest) > 2 or not rest[0]:
                raise ValueError("expected VALUE [TIMESTAMP]")
            value = parse_float(rest[0])
            if len(rest) == 2 and not re.fullmatch(r"-?\d+", rest[1]):
                raise ValueError("bad timestamp %r" % rest[1])
            fam = family_of(name, types)
            if fam is None:
                raise ValueError("sample %s before (or without) a TYPE of its family" % name)
            if fam in done:
                raise ValueError("sample of %s apart from the others of its family" % fam)
            if fam != current:
                if current:
                    done.add(current)
                current = fam
            key = (name, tuple(sorted(labels.items())))
            if key in seen:
                raise ValueError("series %s%s twice" % (name, labels))
            seen.add(key)
            if types[fam] == "counter" and (math.isnan(value) or value < 0):
                raise ValueError("counter %s is %s" % (name, rest[0]))
            sampled.add(fam)
            samples.append((fam, name, labels, value))
        except ValueError as e:
            errors.append("line %d: %s: %s" % (n, e, line[:120]))
    for fam, t in types.items():
        if fam not in helps:
            errors.append("%s has a TYPE but no HELP" % fam)
        if t == "counter" and not fam.endswith("_total"):
            errors.append("counter %s does not end in _total" % fam)
        if prefix and not fam.startswith(prefix):
            errors.append("family %s lacks the prefix %s" % (fam, prefix))
    for fam in helps:
        if fam not in types:
            errors.append("%s has a HELP but no TYPE" % fam)
    errors += check_histograms(samples, types)
    return errors, samples, types


def check_histograms(samples, types):
    errors = []
    groups = {}
    for fam, name, labels, value in samples:
        if types[fam] != "histogram":
            continue
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault((fam, rest), {"buckets": [], "sum": None, "count": None})
        if name == fam + "_bucket":
            if "le" not in labels:
                errors.append("%s%s: a bucket without le" % (name, dict(rest)))
                continue
            try:
                le = parse_float(labels["le"])
            except ValueError:
                errors.append("%s%s: le=%r" % (name, dict(rest), labels["le"]))
                continue
            g["buckets"].append((le, labels["le"], value))
        elif "le" in labels:
            errors.append("%s has le" % name)
        elif name == fam + "_sum":
            g["sum"] = value
        else:
            g["count"] = value
    for (fam, rest), g in groups.items():
        what = "%s%s" % (fam, dict(rest))
        b = g["buckets"]
        if not b:
            errors.append("%s: no buckets" % what)
            continue
        for (le0, _, c0), (le1, s1, c1) in zip(b, b[1:]):
            if not le1 > le0:
                errors.append("%s: le=%s does not rise" % (what, s1))
            if c1 < c0:
                errors.append("%s: le=%s count %g under the one before (%g)" % (what, s1, c1, c0))
        if b[-1][1] != "+Inf":
            errors.append("%s: the last bucket is le=%s, not +Inf" % (what, b[-1][1]))
        if g["count"] is None or g["sum"] is None:
            errors.append("%s: _count or _sum missing" % what)
        elif b[-1][2] != g["count"]:
            errors.append("%s: le=+Inf is %g, _count %g" % (what, b[-1][2], g["count"]))
    return errors


def main(argv):
    prefix, queries, args = None, [], argv[1:]
    while args and args[0].startswith("--"):
        if args[0] == "--prefix" and len(args) > 1:
            prefix, args = args[1], args[2:]
        elif args[0] == "--sum" and len(args) > 1:
            queries.append(args[1])
            args = args[2:]
        else:
            break
    if len(args) != 1:
        sys.stderr.write(__doc__)
        return 2
    with open(args[0], encoding="utf-8") as f:
        text = f.read()
    errors, samples, types = check(text, prefix)
    for e in errors:
        print("check-prom-text: %s: %s" % (args[0], e), file=sys.stderr)
    if errors:
        return 1
    print("check-prom-text: ok: %d families, %d samples" % (len(types), len(samples)),
          file=sys.stderr)
    wanted = []
    for query in queries:
        m = NAME.match(query)
        want, end = {}, m.end() if m else 0
        try:
            if m and end < len(query):
                want, end = parse_labels(query, end)
        except (ValueError, IndexError):
            end = -1
        if not m or end != len(query):
            print("check-prom-text: bad query %r" % query, file=sys.stderr)
            return 2
        wanted.append((m.group(0), want))
    for name, want in wanted:
        print("%.17g" % sum(v for _, n, labels, v in samples if n == name
                            and all(labels.get(k) == x for k, x in want.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
