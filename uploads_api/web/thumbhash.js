// ThumbHash decoding: turns the ~25 bytes in `metadata.thumbhash` into a small blurred
// picture to paint while the real thumbnail loads.
//
// The format is Evan Wallace's ThumbHash (MIT licence). A hash holds the image's average
// colour and a handful of low-frequency DCT coefficients for three channels: luminance L
// and two colour-difference channels P (yellow-blue) and Q (red-green), plus alpha when the
// image has it. Coefficients are 4-bit values; the picture is rebuilt by summing cosines.

const { PI, cos, max, min, round } = Math;

/** Bytes of a base64 string (the form the API sends). */
export function base64ToBytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function readHeader(hash) {
  if (hash.length < 5) throw new RangeError("a ThumbHash has at least 5 bytes");
  const header24 = hash[0] | (hash[1] << 8) | (hash[2] << 16);
  const header16 = hash[3] | (hash[4] << 8);
  const hasAlpha = (header24 >> 23) & 1;
  const isLandscape = (header16 >> 15) & 1;
  // The 3-bit count stored is that of the image's shorter side; the longer side always
  // gets 7 coefficients (5 when alpha takes up room).
  const shortSide = header16 & 7;
  const longSide = hasAlpha ? 5 : 7;
  return {
    lDC: (header24 & 63) / 63,
    pDC: ((header24 >> 6) & 63) / 31.5 - 1,
    qDC: ((header24 >> 12) & 63) / 31.5 - 1,
    lScale: ((header24 >> 18) & 31) / 31,
    hasAlpha,
    pScale: ((header16 >> 3) & 63) / 63,
    qScale: ((header16 >> 9) & 63) / 63,
    lx: isLandscape ? longSide : shortSide,
    ly: isLandscape ? shortSide : longSide,
  };
}

/** Width over height of the encoded image, to within the precision of the hash. */
export function thumbHashToApproximateAspectRatio(hash) {
  const { lx, ly } = readHeader(hash);
  return lx / ly;
}

/**
 * Decode a ThumbHash (a Uint8Array or array of bytes) to at most 32x32 RGBA pixels.
 * Returns `{ w, h, rgba }`, `rgba` a Uint8ClampedArray ready for `new ImageData`.
 */
export function thumbHashToRGBA(hash) {
  const head = readHeader(hash);
  const { hasAlpha } = head;
  const lx = max(3, head.lx);
  const ly = max(3, head.ly);
  const aDC = hasAlpha ? (hash[5] & 15) / 15 : 1;
  const aScale = (hash[5] >> 4) / 15;

  // The AC coefficients follow as packed nibbles, low nibble first. Only the triangle
  // cx/nx + cy/ny < 1 is stored, and never the DC term (0, 0).
  let nibble = 0;
  const start = hasAlpha ? 6 : 5;
  const readChannel = (nx, ny, scale) => {
    const ac = [];
    for (let cy = 0; cy < ny; cy++) {
      for (let cx = cy ? 0 : 1; cx * ny < nx * (ny - cy); cx++) {
        const byte = hash[start + (nibble >> 1)];
        const value = (byte >> ((nibble & 1) * 4)) & 15;
        nibble++;
        ac.push((value / 7.5 - 1) * scale);
      }
    }
    return ac;
  };
  const lAC = readChannel(lx, ly, head.lScale);
  // The encoder's quantisation loses saturation; the reference boosts colour by 1.25.
  const pAC = readChannel(3, 3, head.pScale * 1.25);
  const qAC = readChannel(3, 3, head.qScale * 1.25);
  const aAC = hasAlpha ? readChannel(5, 5, aScale) : [];

  const ratio = head.lx / head.ly;
  const w = round(ratio > 1 ? 32 : 32 * ratio);
  const h = round(ratio > 1 ? 32 / ratio : 32);
  const rgba = new Uint8ClampedArray(w * h * 4);
  const nx = max(lx, hasAlpha ? 5 : 3);
  const ny = max(ly, hasAlpha ? 5 : 3);
  const fx = new Float64Array(nx);
  const fy = new Float64Array(ny);

  for (let y = 0, i = 0; y < h; y++) {
    for (let cy = 0; cy < ny; cy++) fy[cy] = cos((PI / h) * (y + 0.5) * cy);
    for (let x = 0; x < w; x++, i += 4) {
      for (let cx = 0; cx < nx; cx++) fx[cx] = cos((PI / w) * (x + 0.5) * cx);
      let l = head.lDC;
      let p = head.pDC;
      let q = head.qDC;
      let a = aDC;

      for (let cy = 0, j = 0; cy < ly; cy++) {
        const fy2 = fy[cy] * 2;
        for (let cx = cy ? 0 : 1; cx * ly < lx * (ly - cy); cx++, j++) {
          l += lAC[j] * fx[cx] * fy2;
        }
      }
      for (let cy = 0, j = 0; cy < 3; cy++) {
        const fy2 = fy[cy] * 2;
        for (let cx = cy ? 0 : 1; cx < 3 - cy; cx++, j++) {
          const f = fx[cx] * fy2;
          p += pAC[j] * f;
          q += qAC[j] * f;
        }
      }
      if (hasAlpha) {
        for (let cy = 0, j = 0; cy < 5; cy++) {
          const fy2 = fy[cy] * 2;
          for (let cx = cy ? 0 : 1; cx < 5 - cy; cx++, j++) a += aAC[j] * fx[cx] * fy2;
        }
      }

      // LPQ back to RGB: L = (R + G + B) / 3, P = (R + G) / 2 - B, Q = R - G.
      const b = l - (2 / 3) * p;
      const r = (3 * l - b + q) / 2;
      const g = r - q;
      rgba[i] = 255 * min(1, r);
      rgba[i + 1] = 255 * min(1, g);
      rgba[i + 2] = 255 * min(1, b);
      rgba[i + 3] = 255 * min(1, a);
    }
  }
  return { w, h, rgba };
}

/** A PNG data URL of the decoded placeholder, or null when the hash cannot be read. */
export function thumbHashToDataURL(base64) {
  try {
    const { w, h, rgba } = thumbHashToRGBA(base64ToBytes(base64));
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    canvas.getContext("2d").putImageData(new ImageData(rgba, w, h), 0, 0);
    return canvas.toDataURL("image/png");
  } catch {
    return null;
  }
}
