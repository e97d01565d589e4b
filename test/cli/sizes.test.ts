import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatSize, looksLikeSize, parseSize } from '../../src/sizes.js';

const Ki = 1024n;
const Mi = Ki * Ki;
const Gi = Mi * Ki;
const Ti = Gi * Ki;
const Pi = Ti * Ki;

describe('parseSize', () => {
  it('takes plain numbers and B as bytes', () => {
    assert.equal(parseSize('0'), 0n);
    assert.equal(parseSize('4096'), 4096n);
    assert.equal(parseSize('512B'), 512n);
    assert.equal(parseSize('512 b'), 512n);
  });

  it('reads single letters and i/iB suffixes as binary units, case-insensitively', () => {
    assert.equal(parseSize('4k'), 4n * Ki);
    assert.equal(parseSize('4K'), 4n * Ki);
    assert.equal(parseSize('512M'), 512n * Mi);
    assert.equal(parseSize('10G'), 10n * Gi);
    assert.equal(parseSize('10Gi'), 10n * Gi);
    assert.equal(parseSize('10GiB'), 10n * Gi);
    assert.equal(parseSize('10gib'), 10n * Gi);
    assert.equal(parseSize('2T'), 2n * Ti);
    assert.equal(parseSize('1P'), Pi);
    assert.equal(parseSize('8 GiB'), 8n * Gi);
  });

  it('reads KB MB GB TB PB as decimal units', () => {
    assert.equal(parseSize('1KB'), 1000n);
    assert.equal(parseSize('10MB'), 10_000_000n);
    assert.equal(parseSize('10GB'), 10_000_000_000n);
    assert.equal(parseSize('10gb'), 10_000_000_000n);
    assert.equal(parseSize('3TB'), 3_000_000_000_000n);
    assert.equal(parseSize('1PB'), 10n ** 15n);
  });

  it('takes fractions exactly and rounds a partial byte up', () => {
    assert.equal(parseSize('1.5G'), 1610612736n);
    assert.equal(parseSize('0.5K'), 512n);
    assert.equal(parseSize('.5M'), 512n * Ki);
    assert.equal(parseSize('1.1K'), 1127n); // 1126.4 → 1127
    assert.equal(parseSize('2.5GB'), 2_500_000_000n);
    assert.equal(parseSize('1.'), 1n);
    assert.equal(parseSize('4096.0'), 4096n);
  });

  it('refuses a fractional byte count rather than rounding it (the API refuses one too)', () => {
    assert.throws(() => parseSize('1.5'), /whole number/);
    assert.throws(() => parseSize('.5'), /whole number/);
    assert.throws(() => parseSize('4096.5B'), /whole number/);
  });

  it('keeps sizes beyond 2^53 exact', () => {
    assert.equal(parseSize('9007199254740993'), 9007199254740993n);
    assert.equal(parseSize('100P'), 100n * Pi);
  });

  it('refuses what is not a size', () => {
    for (const bad of ['', 'G', '10X', '-1G', '1e9', '10 G B', '10iB', '1.2.3M', '0x10', 'ten', '10GG']) {
      assert.throws(() => parseSize(bad), /invalid size/, bad);
      assert.equal(looksLikeSize(bad), false, bad);
    }
  });
});

describe('formatSize', () => {
  it('prints bytes below 1 KiB as bytes', () => {
    assert.equal(formatSize(0), '0 B');
    assert.equal(formatSize(512), '512 B');
    assert.equal(formatSize(1023), '1023 B');
  });

  it('prints one decimal in the largest fitting binary unit', () => {
    assert.equal(formatSize(1024), '1.0 KiB');
    assert.equal(formatSize(1536), '1.5 KiB');
    assert.equal(formatSize(10 * 2 ** 20), '10.0 MiB');
    assert.equal(formatSize(10 * 2 ** 30), '10.0 GiB');
    assert.equal(formatSize(10n * Gi), '10.0 GiB');
    assert.equal(formatSize(1610612736), '1.5 GiB');
    assert.equal(formatSize(3 * 2 ** 40), '3.0 TiB');
    assert.equal(formatSize(2 ** 53), '8.0 PiB');
  });

  it('carries into the next unit when rounding reaches 1024', () => {
    assert.equal(formatSize(2 ** 20 - 1), '1.0 MiB');
    assert.equal(formatSize(2 ** 30 - 10), '1.0 GiB');
    assert.equal(formatSize(1023 * 1024 + 900), '1023.9 KiB');
  });

  it('round-trips through parseSize for whole units', () => {
    for (const s of ['1K', '10M', '10G', '7T']) {
      const text = formatSize(parseSize(s));
      assert.equal(parseSize(text.replace(/ (.)iB$/, '$1')), parseSize(s), s);
    }
  });
});
