// Text or attribute values into XML we write by template (metadata, REST
// faults): the five characters XML reserves, as the named entities
// fast-xml-parser's builder uses. No input reaches XML any other way.

const XML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
};

export function escapeXml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => XML_ESCAPES[c]!);
}
