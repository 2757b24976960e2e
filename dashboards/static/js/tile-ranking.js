// The wall's `ranking` tile: a KPI by sub-unit as ranked bars with the target line
// (dashboards/PROTOCOL.md, "ranking"). It loads GET /api/v1/breakdown when shown, again when
// the hub says a live reading of its KPI arrived (at most once every few seconds, however
// many arrive), and every 5 minutes as a safety net: never a poll per second.
//
// A factory, not a class of its own module: the tile extends tiles.js's FetchingTile, and
// tiles.js lists it among its kinds (an import both ways would be a cycle).

import { formatNumber, toDate } from "./format.js";
import { pick, t } from "./i18n.js";
import { breakdownQuery } from "./periods.js";
import { drawRankBars, splitRows } from "./rankbars.js";

export const RANK_REFETCH_GAP_S = 5; // live readings ask for a reload at most this often
const RANK_REFETCH_EVERY_S = 300; // the safety net (a reading the hub never relayed, a new day)

export function rankingTile(FetchingTile) {
  return class RankingTile extends FetchingTile {
    build() {
      this.svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      this.svg.setAttribute("class", "rank-svg");
      this.msg = document.createElement("div");
      this.msg.className = "chart-msg";
      this.foot = document.createElement("div");
      this.foot.className = "rank-foot";
      this.body.append(this.svg, this.msg, this.foot);
      this.res = null;
      this.failed = false;
      this.loadedAt = 0;
      this.fetches = 0;
      this.loads = 0;
      this.later = null;
      this.seenChange = null;
      this.resize = new ResizeObserver(() => this.draw());
      this.resize.observe(this.body);
      this.load();
    }

    settings() {
      const d = this.data || {};
      return {
        kpi: this.def.kpi || d.kpi, area: this.def.area || d.area, level: this.def.level || d.level || null,
        period: this.def.period || d.period || "month", top: Number(this.def.top || d.top || 10),
      };
    }

    title() {
      return super.title() || (this.res && this.res.kpi) || "";
    }

    update(data) {
      super.update(data);
      const changed = data && data.changed_at;
      if (!changed || changed === this.seenChange) return;
      this.seenChange = changed;
      const at = toDate(changed);
      // the reading the layout came with is in the first answer already
      if (at && this.loads && at.getTime() / 1000 >= this.loadedAt - 2) this.reloadSoon();
    }

    get refetchEvery() {
      return RANK_REFETCH_EVERY_S;
    }

    get refetchGap() {
      return RANK_REFETCH_GAP_S;
    }

    async load() {
      clearTimeout(this.later);
      this.later = null;
      const s = this.settings();
      if (!s.kpi || !s.area) return;
      const mine = ++this.loads;
      this.loadedAt = this.ctx.serverNow();
      const q = breakdownQuery(s, this.loadedAt, this.ctx.pastSeries);
      this.fetches += 1;
      this.el.dataset.fetches = String(this.fetches);
      try {
        const res = await this.ctx.api(`/api/v1/breakdown?${q}`);
        if (mine !== this.loads || this.destroyed) return;
        this.res = res;
        this.failed = false;
      } catch (err) {
        if (mine !== this.loads || this.destroyed) return;
        this.failed = true;
        console.warn("ranking: breakdown failed", s, err);
      }
      this.renderTitle();
      this.draw();
    }

    render() {
      this.draw();
    }

    draw() {
      if (!this.svg) return;
      const lang = this.lang;
      const res = this.res;
      const show = (text) => {
        this.msg.textContent = text;
        this.msg.hidden = !text;
      };
      if (!res) {
        this.svg.replaceChildren();
        return show(t(lang, this.failed ? "chart.failed" : "chart.loading"));
      }
      const { ranked, empty } = splitRows(res.rows);
      const top = ranked.slice(0, this.settings().top);
      this.el.dataset.ranked = String(ranked.length);
      this.el.dataset.order = top.map((r) => r.code).join(",");
      show(top.length ? "" : t(lang, "chart.empty"));
      const footH = this.foot.offsetHeight || 0;
      drawRankBars(this.svg, top, {
        width: this.body.clientWidth, height: Math.max(40, this.body.clientHeight - footH), target: res.target,
        better: res.better, unit: res.unit, lang,
      });
      const total = res.total && res.total.value !== null && res.total.value !== undefined
        ? `${t(lang, "rank.total")}: ${formatNumber(res.total.value, undefined, lang)}${res.unit === "%" ? " %" : ` ${pick(res, "unit", lang) || ""}`}` : "";
      const bits = [t(lang, `drill.period_${this.settings().period}`), total];
      if (ranked.length > top.length) bits.push(t(lang, "rank.of", { n: formatNumber(ranked.length, 0, lang) }));
      if (empty.length) bits.push(t(lang, "rank.no_data_n", { n: formatNumber(empty.length, 0, lang) }));
      this.foot.textContent = bits.filter(Boolean).join(" · ");
    }

    destroy() {
      this.resize.disconnect();
      clearTimeout(this.later);
      this.destroyed = true;
    }
  };
}
