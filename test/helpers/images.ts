/**
 * Image headers built byte by byte from the formats' specifications, for tests of memq's image
 * token rule: only the bytes a size reader looks at are meaningful; the rest is filler.
 */

/** `bytes` as a `data:` URL of `mediaType`, base64. */
export const dataUrl = (bytes: Buffer, mediaType = 'image/png') =>
  `data:${mediaType};base64,${bytes.toString('base64')}`;

/** A PNG signature and IHDR chunk declaring `width` x `height`, then `filler` bytes. */
export function png(width: number, height: number, filler = 16): Buffer {
  const ihdr = Buffer.alloc(25);
  ihdr.writeUInt32BE(13, 0);
  ihdr.write('IHDR', 4, 'latin1');
  ihdr.writeUInt32BE(width, 8);
  ihdr.writeUInt32BE(height, 12);
  ihdr.writeUInt8(8, 16); // bit depth
  ihdr.writeUInt8(6, 17); // colour type RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    ihdr,
    Buffer.alloc(filler, 0x5a),
  ]);
}

/** A GIF89a header declaring a `width` x `height` logical screen. */
export function gif(width: number, height: number): Buffer {
  const b = Buffer.alloc(32, 0);
  b.write('GIF89a', 0, 'latin1');
  b.writeUInt16LE(width, 6);
  b.writeUInt16LE(height, 8);
  return b;
}

/** A RIFF/WEBP header whose first chunk is `chunk` (`VP8 `, `VP8L` or `VP8X`) for `width` x `height`. */
export function webp(chunk: 'VP8 ' | 'VP8L' | 'VP8X', width: number, height: number): Buffer {
  const b = Buffer.alloc(40, 0);
  b.write('RIFF', 0, 'latin1');
  b.writeUInt32LE(32, 4);
  b.write('WEBP', 8, 'latin1');
  b.write(chunk, 12, 'latin1');
  b.writeUInt32LE(20, 16);
  if (chunk === 'VP8 ') {
    b[23] = 0x9d;
    b[24] = 0x01;
    b[25] = 0x2a;
    b.writeUInt16LE(width, 26);
    b.writeUInt16LE(height, 28);
  } else if (chunk === 'VP8L') {
    b[20] = 0x2f;
    b.writeUInt32LE(((width - 1) | ((height - 1) << 14)) >>> 0, 21);
  } else {
    b.writeUIntLE(width - 1, 24, 3);
    b.writeUIntLE(height - 1, 27, 3);
  }
  return b;
}

/**
 * A JPEG: SOI, then `app` APP1 segments of `appBytes` bytes each (what Exif and ICC profiles add
 * before the frame), a DQT, then an SOF0 declaring `width` x `height`, then filler.
 */
export function jpeg(width: number, height: number, app = 1, appBytes = 1000): Buffer {
  const segment = (marker: number, body: Buffer) => {
    const head = Buffer.from([0xff, marker, 0, 0]);
    head.writeUInt16BE(body.length + 2, 2);
    return Buffer.concat([head, body]);
  };
  const sof = Buffer.alloc(15, 0);
  sof[0] = 8; // precision
  sof.writeUInt16BE(height, 1);
  sof.writeUInt16BE(width, 3);
  sof[5] = 3; // components
  return Buffer.concat([
    Buffer.from([0xff, 0xd8]),
    ...Array.from({ length: app }, () => segment(0xe1, Buffer.alloc(appBytes, 0x45))),
    segment(0xdb, Buffer.alloc(65, 1)),
    Buffer.from([0xff]), // a fill byte before the next marker
    segment(0xc0, sof),
    Buffer.alloc(64, 0x11),
  ]);
}
