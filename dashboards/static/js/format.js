// Formatting for every page: numbers as 1.234,5 in Vietnamese and 1,234.5 in English, dates
// as dd/mm/yyyy, in the province's time zone whatever the device's own zone is.

export const TZ = "Asia/Ho_Chi_Minh";

const numberFormats = new Map();

function numberFormat(maxFraction, lang) {
  const key = `${lang}|${maxFraction}`;
  let f = numberFormats.get(key);
  if (!f) {
    f = new Intl.NumberFormat(lang === "en" ? "en-US" : "vi-VN", { maximumFractionDigits: maxFraction, minimumFractionDigits: 0 });
    numberFormats.set(key, f);
  }
  return f;
}

/** 1234.5 -> "1.234,5" (vi) or "1,234.5" (en); small values keep two decimals, large ones one. */
export function formatNumber(value, maxFraction, lang = "vi") {
  if (value === null || value === undefined || value === "") return "—";
  const v = Number(value);
  if (!Number.isFinite(v)) return "—";
  const digits = maxFraction ?? (Math.abs(v) >= 10 ? 1 : 2);
  return numberFormat(digits, lang).format(v);
}

/** A Date from epoch seconds, an ISO 8601 string or a Date; null when it is none of them. */
export function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value;
  const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

const partsFormat = new Intl.DateTimeFormat("vi-VN", {
  timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", numberingSystem: "latn",
});

/** {year, month, day, hour, minute, second, weekday (0 = Sunday)} in the province's zone. */
export function localParts(value) {
  const d = toDate(value);
  if (!d) return null;
  const out = {};
  for (const p of partsFormat.formatToParts(d)) {
    if (p.type !== "literal") out[p.type] = p.value.padStart(p.type === "year" ? 4 : 2, "0");
  }
  out.weekday = new Date(Date.UTC(+out.year, +out.month - 1, +out.day)).getUTCDay();
  return out;
}

export function formatDate(value) {
  const p = localParts(value);
  return p ? `${p.day}/${p.month}/${p.year}` : "—";
}

export function formatTime(value, seconds = true) {
  const p = localParts(value);
  if (!p) return "—";
  return seconds ? `${p.hour}:${p.minute}:${p.second}` : `${p.hour}:${p.minute}`;
}

/** "dd/mm/yyyy HH:mm:ss" (or without seconds). */
export function formatDateTime(value, seconds = true) {
  const p = localParts(value);
  return p ? `${formatDate(value)} ${formatTime(value, seconds)}` : "—";
}

/** "dd/mm HH:mm": for axis labels and lists where the year is obvious. */
export function formatShort(value) {
  const p = localParts(value);
  return p ? `${p.day}/${p.month} ${p.hour}:${p.minute}` : "—";
}

const WEEKDAYS = {
  vi: ["Chủ nhật", "Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy"],
  en: ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"],
};

export function weekday(value, lang = "vi") {
  const p = localParts(value);
  return p ? (WEEKDAYS[lang] || WEEKDAYS.vi)[p.weekday] : "";
}

/** How old something is, short: "vừa xong", "12 giây", "5 phút", "3 giờ", "2 ngày". */
export function formatAge(seconds, lang = "vi") {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, seconds);
  const vi = lang !== "en";
  if (s < 1) return vi ? "vừa xong" : "now";
  if (s < 60) return vi ? `${Math.floor(s)} giây` : `${Math.floor(s)} s`;
  if (s < 3600) return vi ? `${Math.floor(s / 60)} phút` : `${Math.floor(s / 60)} min`;
  if (s < 86400) return vi ? `${Math.floor(s / 3600)} giờ` : `${Math.floor(s / 3600)} h`;
  return vi ? `${Math.floor(s / 86400)} ngày` : `${Math.floor(s / 86400)} d`;
}
