import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatTable } from '../../src/cli/client/table.js';

describe('formatTable', () => {
  it('aligns columns under their headers, two spaces apart', () => {
    const out = formatTable(
      [{ header: 'NAME' }, { header: 'SIZE', align: 'right' }, { header: 'UUID' }],
      [
        ['vol1', '10.0 GiB', 'abc'],
        ['a-much-longer-name', '512 B', 'de'],
      ],
    );
    assert.equal(
      out,
      [
        'NAME                    SIZE  UUID',
        'vol1                10.0 GiB  abc',
        'a-much-longer-name     512 B  de',
        '',
      ].join('\n'),
    );
  });

  it('leaves no trailing blanks and pads right-aligned last columns', () => {
    const out = formatTable([{ header: 'A' }, { header: 'B' }], [['xxxx', '']]);
    assert.equal(out, 'A     B\nxxxx\n');
    const right = formatTable([{ header: 'ID' }, { header: 'N', align: 'right' }], [['1', '100']]);
    assert.equal(right, 'ID    N\n1   100\n');
  });

  it('prints just the header for no rows', () => {
    assert.equal(formatTable([{ header: 'NAME' }, { header: 'SIZE' }], []), 'NAME  SIZE\n');
  });

  it('counts code points, not UTF-16 units', () => {
    const out = formatTable(
      [{ header: 'N' }, { header: 'X' }],
      [
        ['𝔸b', '1'],
        ['abc', '2'],
      ],
    );
    assert.equal(out, 'N    X\n𝔸b   1\nabc  2\n');
  });
});
