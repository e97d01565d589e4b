/** One table column: its header and how cells line up (numbers read best right-aligned). */
export interface Column {
  header: string;
  align?: 'left' | 'right';
}

/** Character width of a cell; code points, so that non-ASCII names don't skew the columns. */
function width(s: string): number {
  return [...s].length;
}

/**
 * Renders rows under a header line, columns separated by two spaces and padded to their widest cell.
 * The last column is not padded when left-aligned, so lines carry no trailing blanks.
 */
export function formatTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  const widths = columns.map((c, i) => Math.max(width(c.header), ...rows.map((r) => width(r[i] ?? ''))));
  const line = (cells: readonly string[]): string =>
    columns
      .map((c, i) => {
        const cell = cells[i] ?? '';
        const fill = ' '.repeat(widths[i]! - width(cell));
        if (c.align === 'right') return fill + cell;
        return i === columns.length - 1 ? cell : cell + fill;
      })
      .join('  ')
      .trimEnd();
  return `${[columns.map((c) => c.header), ...rows].map(line).join('\n')}\n`;
}
