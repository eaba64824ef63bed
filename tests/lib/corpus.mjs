// A deterministic generated corpus for tokenizer parity tests and benchmarks: English prose,
// source code, many scripts (CJK, Arabic, Devanagari, Cyrillic, Greek, Hebrew, Thai, Hangul),
// emoji and ZWJ sequences, combining marks, digit runs, whitespace runs of every kind, CRLF,
// contractions (including the case-folding corner "'ſ"), very long words and random code points.
// makeCorpus({bytes, seed, jsWhitespace}) returns an array of sample strings; jsWhitespace false
// makes a corpus for the JavaScript references (see below).

export function rng(seed) {
  let s = BigInt(seed) | 1n;
  return () => {
    // xorshift64*
    s ^= s >> 12n;
    s ^= (s << 25n) & 0xffffffffffffffffn;
    s ^= s >> 27n;
    return Number(((s * 0x2545f4914f6cdd1dn) & 0xffffffffffffffffn) >> 11n) / 2 ** 53;
  };
}

const words = (
  'the of and to in is was that for it with as his on be at by had are but from or have an they which ' +
  'one you were all we her she there would their will when who him been has more if no out do so can ' +
  'what up said about other into than its time only could new them man some these then two first may ' +
  'any like now my such make over our even most me state after also made many did must before back ' +
  'through years where much your way well down should because each just those people how too little ' +
  'good very world invoice tenant budget token gateway throughput latency reservation settlement'
).split(' ');
const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'LL", "'D", '’s', "'ſ", "'x"];
const code = [
  'for (int i = 0; i < n; ++i) {\n    sum += v[i] * 2;\n}\n',
  'def handler(event, context):\n\treturn {"statusCode": 200, "body": json.dumps(event)}\n',
  'const x = await fetch(`${base}/v1/chat/completions`, { method: "POST" });\r\n',
  '#include <vector>\n\nint main() { return std::vector<int>{1, 2, 3}.size() == 3 ? 0 : 1; }\n',
  'SELECT tenant_id, sum(prompt_tokens) FROM usage_events WHERE occurred_at >= now() - interval \'1 day\' GROUP BY 1;\n',
  '    if err != nil {\n        return fmt.Errorf("open %s: %w", path, err)\n    }\n',
  '<div class="row"><span id=\'a1\'>&nbsp;&amp;</span></div>\n',
  'x=1;y=2;;z=x+y//comment\n/* block */ a[i]->b.c(d,e);\n',
];
const ranges = {
  cjk: [0x4e00, 0x9fff], hiragana: [0x3041, 0x3096], katakana: [0x30a1, 0x30fa], hangul: [0xac00, 0xd7a3],
  arabic: [0x0621, 0x064a], arabicMarks: [0x064b, 0x065f], devanagari: [0x0905, 0x0939],
  devanagariSigns: [0x093e, 0x094d], cyrillic: [0x0410, 0x044f], greek: [0x0391, 0x03c9],
  hebrew: [0x05d0, 0x05ea], thai: [0x0e01, 0x0e3a], latinExt: [0x00c0, 0x024f], combining: [0x0300, 0x036f],
  arabicDigits: [0x0660, 0x0669], fullwidthDigits: [0xff10, 0xff19], emoji: [0x1f600, 0x1f64f],
  symbols: [0x2200, 0x22ff], mathAlnum: [0x1d400, 0x1d7ff],
};
// Code points (in the ranges drawn from below) assigned after Unicode 15.0. Tollgate's character
// classes are Unicode 16.0 (tiktoken's); node's are newer, and its NFC knows marks that
// Tollgate's Unicode 15.0 normalization data does not. The corpus for the JavaScript references
// leaves these out.
const newerThanUnicode15 = [
  [0x88f, 0x88f], [0x897, 0x897], [0xc5c, 0xc5c], [0xcdc, 0xcdc], [0x1acf, 0x1add],
  [0x1ae0, 0x1aeb], [0x1b4e, 0x1b4f], [0x1b7f, 0x1b7f], [0x1c89, 0x1c8a], [0x20c1, 0x20c1],
  [0x2427, 0x2429], [0x2b96, 0x2b96], [0x2ffc, 0x2fff], [0x105c0, 0x105f3], [0x10940, 0x10959],
  [0x10d40, 0x10d65], [0x10d69, 0x10d85], [0x10d8e, 0x10d8f], [0x10ec2, 0x10ec7],
  [0x10ed0, 0x10ed8], [0x10efa, 0x10efc], [0x11380, 0x11389], [0x1138b, 0x1138b],
  [0x1138e, 0x1138e], [0x11390, 0x113b5], [0x113b7, 0x113c0], [0x113c2, 0x113c2],
  [0x113c5, 0x113c5], [0x113c7, 0x113ca], [0x113cc, 0x113d5], [0x113d7, 0x113d8],
  [0x113e1, 0x113e2], [0x116d0, 0x116e3], [0x11b60, 0x11b67], [0x11bc0, 0x11be1],
  [0x11bf0, 0x11bf9], [0x11db0, 0x11ddb], [0x11de0, 0x11de9], [0x11f5a, 0x11f5a],
  [0x13460, 0x143fa], [0x16100, 0x16139], [0x16d40, 0x16d79], [0x16ea0, 0x16eb8],
  [0x16ebb, 0x16ed3], [0x16ff2, 0x16ff6], [0x187f8, 0x187ff], [0x18cff, 0x18cff],
  [0x18d09, 0x18d1e], [0x18d80, 0x18df2], [0x1cc00, 0x1ccfc], [0x1cd00, 0x1ceb3],
  [0x1ceba, 0x1ced0], [0x1cee0, 0x1cef0], [0x1e5d0, 0x1e5fa], [0x1e5ff, 0x1e5ff],
  [0x1e6c0, 0x1e6de], [0x1e6e0, 0x1e6f5], [0x1e6fe, 0x1e6ff], [0x1f6d8, 0x1f6d8],
  [0x1f777, 0x1f77a], [0x1f8b2, 0x1f8bb], [0x1f8c0, 0x1f8c1], [0x1f8d0, 0x1f8d8],
  [0x1fa54, 0x1fa57], [0x1fa89, 0x1fa8a], [0x1fa8e, 0x1fa8f], [0x1fabe, 0x1fabe],
  [0x1fac6, 0x1fac6], [0x1fac8, 0x1fac8], [0x1facd, 0x1facd], [0x1fadc, 0x1fadc],
  [0x1fadf, 0x1fadf], [0x1fae9, 0x1faea], [0x1faef, 0x1faef],
];
const isNewerThanUnicode15 = (cp) => newerThanUnicode15.some(([a, b]) => cp >= a && cp <= b);
const emojiSeqs = ['👨‍👩‍👧‍👦', '🏳️‍🌈', '👍🏽', '🧑🏿‍💻', '❤️‍🔥', '🇩🇪🇫🇷', '✌︎', '1️⃣', '👩‍❤️‍💋‍👨'];
const spaces = [' ', '  ', '\t', '\n', '\r\n', '\n\n\n', '   \n  ', '\u00a0', '\u3000', '\u2028', '\u2009', ' \t \n', '\u0085', '\ufeff', '\v\f'];

export function makeCorpus({ bytes = 5 * 1024 * 1024, seed = 20261122, jsWhitespace = true } = {}) {
  const r = rng(seed);
  const pick = (a) => a[Math.floor(r() * a.length)];
  const int = (lo, hi) => lo + Math.floor(r() * (hi - lo + 1));
  const from = (name, n) => {
    const [lo, hi] = ranges[name];
    let s = '';
    for (let i = 0; i < n; i++) s += String.fromCodePoint(int(lo, hi));
    return s;
  };
  // JavaScript's \s differs from Unicode White_Space on U+0085 and U+FEFF; the JavaScript
  // reference for tokenizer.json models cannot be asked about those two.
  const space = () => {
    let s = pick(spaces);
    while (!jsWhitespace && (s.includes('\u0085') || s.includes('\ufeff'))) s = pick(spaces);
    return s;
  };
  const prose = () => {
    let s = '';
    const n = int(5, 40);
    for (let i = 0; i < n; i++) {
      let w = pick(words);
      if (r() < 0.15) w = w[0].toUpperCase() + w.slice(1);
      if (r() < 0.03) w = w.toUpperCase();
      if (r() < 0.08) w += pick(contractions);
      s += w + (r() < 0.1 ? pick([',', '.', ';', ':', '!', '?', ' -', '...', '"']) : '') + ' ';
    }
    return s.trimEnd() + pick(['.', '!\n', '?\r\n', '.\n\n']);
  };
  const script = () => {
    const name = pick(['cjk', 'hiragana', 'katakana', 'hangul', 'arabic', 'devanagari', 'cyrillic', 'greek', 'hebrew', 'thai', 'latinExt']);
    let s = '';
    const n = int(1, 8);
    for (let i = 0; i < n; i++) {
      s += from(name, int(1, 12));
      if (name === 'arabic' && r() < 0.5) s += from('arabicMarks', 1);
      if (name === 'devanagari' && r() < 0.7) s += from('devanagariSigns', int(1, 2));
      s += r() < 0.7 ? ' ' : pick(['، ', '。', '、', '! ', '? ', '\n']);
    }
    return s;
  };
  const digits = () => {
    const kind = r();
    if (kind < 0.6) return String(int(0, 9)).repeat(0) + Array.from({ length: int(1, 40) }, () => int(0, 9)).join('');
    if (kind < 0.8) return from(pick(['arabicDigits', 'fullwidthDigits']), int(1, 9));
    return `${int(0, 99999)}.${int(0, 999)} ${int(1, 31)}/${int(1, 12)}/${int(1900, 2100)} v${int(1, 9)}.${int(0, 20)}`;
  };
  const marks = () => {
    let s = '';
    const n = int(1, 6);
    for (let i = 0; i < n; i++) s += pick(['e', 'a', 'o', 'A', 'n', ' ', '\u0301']) + from('combining', int(1, 3));
    return s + ' ' + 'e\u0301te\u0301 cafe\u0301 \u1100\u1161\u11a8 Å Å'.slice(0, int(3, 20));
  };
  const longWord = () => {
    const n = int(65, 3000);
    const kind = r();
    if (kind < 0.3) return pick(['a', 'z', 'Q', 'ab', 'xyz']).repeat(Math.ceil(n / 2)).slice(0, n);
    if (kind < 0.6) return Array.from({ length: n }, () => String.fromCharCode(int(97, 122))).join('');
    if (kind < 0.8) return from('cjk', int(30, 400));
    return '-'.repeat(int(65, 300)) + '='.repeat(int(1, 80));
  };
  const randomCodePoints = () => {
    let s = '';
    const n = int(1, 20);
    for (let i = 0; i < n; i++) {
      let cp = r() < 0.7 ? int(0x20, 0x2fff) : int(0x10000, 0x1faff);
      if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
      if (!jsWhitespace && (cp === 0x85 || cp === 0xfeff || isNewerThanUnicode15(cp))) cp = 0x42;
      s += String.fromCodePoint(cp);
    }
    return s;
  };
  const makers = [
    [prose, 30], [() => pick(code), 10], [script, 18], [() => pick(emojiSeqs) + from('emoji', int(0, 3)), 5],
    [marks, 5], [digits, 8], [space, 10], [longWord, 1], [randomCodePoints, 6],
    [() => from(pick(['symbols', 'mathAlnum']), int(1, 10)), 3],
  ];
  const total = makers.reduce((a, [, w]) => a + w, 0);
  const part = () => {
    let x = r() * total;
    for (const [f, w] of makers) {
      if ((x -= w) < 0) return f();
    }
    return prose();
  };
  const samples = [];
  let size = 0;
  while (size < bytes) {
    let s = '';
    const parts = int(1, 12);
    for (let i = 0; i < parts; i++) s += part() + (r() < 0.5 ? space() : '');
    samples.push(s);
    size += Buffer.byteLength(s);
  }
  return samples;
}
