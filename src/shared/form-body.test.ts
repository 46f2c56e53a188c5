import { describe, expect, it } from "vitest";
import { ApiError } from "../errors.ts";
import { MalformedFormError, parseFormBody, type FormPart } from "./form-body.ts";

const enc = new TextEncoder();
const bytes = (...chunks: Array<string | number[]>) =>
  new Uint8Array(chunks.flatMap((c) => (typeof c === "string" ? [...enc.encode(c)] : c)));
const texts = (parts: FormPart[]) => parts.map((p) => [p.name, p.kind === "text" ? p.value : `file:${p.filename}`]);
const URLENC = "application/x-www-form-urlencoded";

/** What the platform's own parser (formData()) makes of the same valid body. */
async function platform(type: string, body: Uint8Array) {
  const form = await new Response(body.slice(), { headers: { "content-type": type } }).formData();
  const entries: string[][] = [];
  form.forEach((value, name) => {
    entries.push([name, typeof value === "string" ? value : `file:${value.name}`]);
  });
  return entries;
}

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("did not throw");
}

describe("form bodies: happy path", () => {
  it("agrees with the platform's formData() on valid bodies (multipart and urlencoded)", async () => {
    const form = new FormData();
    form.append("workflowId", "w1");
    form.append("inputs", '{"name":"Adá 😀","multi":"line\r\n--not a boundary\r\n"}');
    form.append("empty", "");
    form.append("inputs", "second");
    form.append("file", new File([new Uint8Array([0xff, 0x00, 0x0d, 0x0a])], "a.bin"));
    const req = new Request("http://x/", { method: "POST", body: form });
    const type = req.headers.get("content-type")!;
    const body = new Uint8Array(await req.arrayBuffer());
    expect(texts(parseFormBody(type, body))).toEqual(await platform(type, body));
    for (const text of ["a=1&b=2", "a=%C3%A1+b&&c&d=&=e", "x=%EF%BB%BFbom", `raw=${"Łukasz"}`]) {
      expect([text, texts(parseFormBody(URLENC, enc.encode(text)))]).toEqual([text, await platform(URLENC, enc.encode(text))]);
    }
  });

  it("urlencoded follows the WHATWG parser (URLSearchParams), also where workerd's formData() does not: %zz stays as sent", () => {
    for (const text of ["a=%zz%4&b=%2B", "a==b=c&%=%25", "+a+=+"]) {
      expect([text, texts(parseFormBody(URLENC, enc.encode(text)))]).toEqual([text, [...new URLSearchParams(text)]]);
    }
  });

  it("multipart: a preamble, transport padding, a quoted boundary, header case, an empty part and a file by filename*", () => {
    const body = bytes(
      "preamble\r\n--a b\t \r\n",
      'CONTENT-DISPOSITION: Form-Data; NAME="x"; extra=1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n',
      "1\r\n--a b\r\n",
      'Content-Disposition: form-data; name="y"\r\n\r\n\r\n--a b\r\n',
      "Content-Disposition: form-data; name=f; filename*=utf-8''r%C3%A9.bin\r\n\r\n",
      [0xff, 0xfe],
      "\r\n--a b--\r\nepilogue",
    );
    const parts = parseFormBody('multipart/form-data; boundary="a b"', body);
    expect(texts(parts)).toEqual([
      ["x", "1"],
      ["y", ""],
      ["f", "file:utf-8''r%C3%A9.bin"],
    ]);
    expect(parts[2]!.kind === "file" && [...parts[2]!.bytes]).toEqual([0xff, 0xfe]);
  });
});

describe("form bodies: header parameters", () => {
  it("quoted values keep their semicolons and escaped quotes; the first of a repeated parameter wins", () => {
    const body = bytes(
      '--b\r\nContent-Disposition: form-data; name="a\\"b"; name="other"; filename="x;y.txt"\r\n\r\n1\r\n',
      '--b\r\nContent-Disposition: form-data;name=plain ;flag; other = "v"\r\n\r\n2\r\n--b--',
    );
    expect(texts(parseFormBody("multipart/form-data; charset=utf-8; boundary=b", body))).toEqual([
      ['a"b', "file:x;y.txt"],
      ["plain", "2"],
    ]);
  });

  it("a hostile part header (a megabyte of unterminated, escaped quotes) is read in one pass", () => {
    const hostile = `Content-Disposition: form-data; name="x"${';a="\\"'.repeat(150_000)}\r\n\r\n`;
    const parts = parseFormBody("multipart/form-data; boundary=b", bytes("--b\r\n", hostile, "1\r\n--b--"));
    expect(texts(parts)).toEqual([["x", "1"]]);
  });
});

describe("form bodies: errors", () => {
  it("a body that is not a well-formed form is a MalformedFormError", () => {
    const part = 'Content-Disposition: form-data; name="x"\r\n\r\n1\r\n';
    for (const [type, body] of [
      ["multipart/form-data", `--b\r\n${part}--b--`],
      ["multipart/form-data; boundary=b", `--c\r\n${part}--c--`],
      ["multipart/form-data; boundary=b", `--b\r\n${part}`],
      ["multipart/form-data; boundary=b", '--b\r\nContent-Disposition: form-data; name="x"\r\n1\r\n--b--'],
      ["multipart/form-data; boundary=b", "--b\r\nContent-Disposition: attachment\r\n\r\n1\r\n--b--"],
      ["multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data\r\n\r\n1\r\n--b--"],
      ["multipart/form-data; boundary=b", `--bX\r\n${part}--b--`],
      ["text/plain", "a=1"],
    ] as const) {
      expect([type, body, errorOf(() => parseFormBody(type, enc.encode(body)))]).toEqual([type, body, expect.any(MalformedFormError)]);
    }
  });
});

describe("form bodies: security", () => {
  const code = (err: unknown) => (err instanceof ApiError ? [err.code, err.status, err.issues] : err);

  it("text that is not UTF-8 is 400 invalid_encoding naming the field, in values, names and part headers", () => {
    const part = (name: string | number[], value: string | number[], filename: string | number[] = "") =>
      bytes('--b\r\nContent-Disposition: form-data; name="', name, '"', filename, "\r\n\r\n", value, "\r\n");
    const multipart = (...parts: Uint8Array[]) =>
      parseFormBody("multipart/form-data; boundary=b", new Uint8Array([...parts.flatMap((p) => [...p]), ...enc.encode("--b--")]));
    expect(code(errorOf(() => multipart(part("ok", "1"), part("inputs", [0xc0, 0xaf]))))).toEqual([
      "invalid_encoding",
      400,
      [{ path: "inputs", message: "not valid UTF-8" }],
    ]);
    expect(code(errorOf(() => multipart(part([0x6e, 0xff], "1"))))).toEqual([
      "invalid_encoding",
      400,
      [{ path: "(body)", message: "not valid UTF-8" }],
    ]);
    // A file's content is binary and is not decoded; its file name is a header, so it is.
    expect(texts(multipart(part("f", [0xff], '; filename="a.bin"')))).toEqual([["f", "file:a.bin"]]);
    expect(code(errorOf(() => multipart(part("f", "x", [...bytes('; filename="', [0xff], '"')]))))).toEqual(
      expect.arrayContaining(["invalid_encoding"]),
    );
    expect(code(errorOf(() => parseFormBody(URLENC, enc.encode("inputs=%FF"))))).toEqual([
      "invalid_encoding",
      400,
      [{ path: "inputs", message: "not valid UTF-8" }],
    ]);
    expect(code(errorOf(() => parseFormBody(URLENC, bytes("inputs=", [0xed, 0xa0, 0x80]))))).toEqual(
      expect.arrayContaining(["invalid_encoding"]),
    );
    expect(code(errorOf(() => parseFormBody(URLENC, enc.encode("in%E2%82=1"))))).toEqual(expect.arrayContaining(["invalid_encoding"]));
  });

  it("a form or a text part declared in another charset than UTF-8 is refused, never read as UTF-8: 415 for the form, 400 invalid_encoding naming the field", () => {
    // Valid UTF-8 ("é"), which its sender meant as Latin-1 ("Ã©"): read as UTF-8 it would be other text.
    const latin1Meant = bytes("inputs=", [0xc3, 0xa9]);
    for (const type of [`${URLENC}; charset=iso-8859-1`, `${URLENC};charset="UTF-16"`, `${URLENC}; charset=utf-8; charset=latin1`]) {
      expect([type, code(errorOf(() => parseFormBody(type, latin1Meant)))]).toEqual([type, ["unsupported_media_type", 415, undefined]]);
    }
    expect(code(errorOf(() => parseFormBody("multipart/form-data; charset=windows-1252; boundary=b", bytes("--b--"))))).toEqual(
      expect.arrayContaining(["unsupported_media_type"]),
    );
    const part = (headers: string) =>
      parseFormBody(
        "multipart/form-data; boundary=b",
        bytes(`--b\r\nContent-Disposition: form-data; name="inputs"\r\n${headers}\r\n`, [0xc3, 0xa9], "\r\n--b--"),
      );
    expect(code(errorOf(() => part("Content-Type: text/plain; charset=iso-8859-1\r\n")))).toEqual([
      "invalid_encoding",
      400,
      [{ path: "inputs", message: "declared as iso-8859-1: form fields must be UTF-8" }],
    ]);
    // UTF-8 under any of its labels, or no charset, is read as before.
    expect(texts(parseFormBody(`${URLENC}; charset=UTF8`, latin1Meant))).toEqual([["inputs", "é"]]);
    expect(texts(part('content-type: text/plain; charset="utf-8"\r\n'))).toEqual([["inputs", "é"]]);
    expect(texts(part("Content-Type: application/json\r\n"))).toEqual([["inputs", "é"]]);
  });
});
