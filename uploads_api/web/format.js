// Numbers, sizes and dates as people read them.

const UNITS = ["bytes", "KB", "MB", "GB", "TB"];

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "";
  // No-break spaces keep a number with its unit when a line wraps.
  if (bytes < 1000) return bytes === 1 ? "1\u00a0byte" : `${bytes}\u00a0bytes`;
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  const digits = value < 10 ? 1 : 0;
  return `${value.toFixed(digits)}\u00a0${UNITS[unit]}`;
}

export function formatPercent(fraction) {
  return `${Math.floor(Math.max(0, Math.min(1, fraction)) * 100)} %`;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function formatDate(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : dateTime.format(date);
}

/** EXIF dates come as ISO 8601 ("2024-05-17T14:03:22", maybe with an offset) in the camera's
 * local time; show that time as recorded (older records: "2024:05:17 14:03:22"). */
export function formatExifDate(value) {
  const match = /^(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2})/.exec(String(value));
  if (!match) return String(value);
  const [, y, mo, d, hh, mm] = match;
  return dateTime.format(new Date(Number(y), Number(mo) - 1, Number(d), Number(hh), Number(mm)));
}

/** A duration in seconds as m:ss, or h:mm:ss from an hour on. */
export function formatDuration(seconds) {
  const total = Math.round(Number(seconds));
  if (!Number.isFinite(total) || total < 0) return "";
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

export function formatExposure(seconds) {
  const value = Number(seconds);
  if (!Number.isFinite(value) || value <= 0) return String(seconds);
  if (value >= 1) return `${value} s`;
  return `1/${Math.round(1 / value)} s`;
}

export function formatNumber(value, digits = 1) {
  const number = Number(value);
  return Number.isFinite(number) ? String(Number(number.toFixed(digits))) : String(value);
}

export function formatCoordinate(value, positive, negative) {
  const number = Number(value);
  if (!Number.isFinite(number)) return String(value);
  return `${Math.abs(number).toFixed(5)}° ${number >= 0 ? positive : negative}`;
}

/** "PDF", "JPG", "FILE": a short label for a file-type icon. */
export function extensionLabel(name, fallback = "FILE") {
  const match = /\.([A-Za-z0-9]{1,5})$/.exec(name || "");
  return match ? match[1].toUpperCase() : fallback;
}
