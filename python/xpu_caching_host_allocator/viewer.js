// xpu_caching_host_allocator's offline view of a memory snapshot (viz.py).
//
// PyTorch's viewer (torch.cuda._memory_viz) loads MemoryViz.js and d3 from
// CDNs when the page is opened. Where they cannot be reached (no network, a
// firewall), or when the page was written without PyTorch, this script draws
// the same snapshot by itself: the active-memory timeline, the blocks held
// and the trace, from the JSON in <script id="xpu-host-snapshot">. It needs
// nothing but the page.
(function () {
  'use strict';

  const COLORS = ['#4e79a7', '#f28e2c', '#e15759', '#76b7b2', '#59a14f', '#edc949', '#af7aa1', '#ff9da7', '#9c755f', '#bab0ab'];
  const STATE_COLORS = {active_allocated: '#4e79a7', active_pending_free: '#e15759', inactive: '#bab0ab'};
  const SVG = 'http://www.w3.org/2000/svg';
  const MAX_DRAWN = 2000;
  const MAX_LISTED = 2000;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  function formatSize(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = n;
    for (const unit of units) {
      if (Math.abs(v) < 1024 || unit === 'TiB') return unit === 'B' ? `${n} B` : `${v.toFixed(1)} ${unit} (${n} bytes)`;
      v /= 1024;
    }
    return `${n} B`;
  }

  function hex(addr) {
    return '0x' + Number(addr).toString(16);
  }

  function frameText(f) {
    return `${f.filename}:${f.line}:${f.name}`;
  }

  function topFrame(frames) {
    return frames && frames.length ? frameText(frames[0]) : '';
  }

  function stackText(frames) {
    return frames && frames.length ? frames.map(frameText).join('\n') : '(no stack: recorded before history, or without context)';
  }

  // The active-memory timeline, as PyTorch's "Active Memory Timeline" draws
  // it: each allocation a band stacked on those alive before it, from its
  // alloc to its free_completed; bands above a freed one slide down.
  function timeline(snapshot) {
    const events = (snapshot.device_traces && snapshot.device_traces[0]) || [];
    const elements = [];
    const actions = [];
    const initial = [];
    const liveByAddr = {};
    for (const e of events) {
      if (e.action === 'alloc') {
        elements.push({addr: e.addr, size: e.size, frames: e.frames || []});
        liveByAddr[e.addr] = elements.length - 1;
        actions.push(elements.length - 1);
      } else if (e.action === 'free_completed') {
        if (e.addr in liveByAddr) {
          actions.push(liveByAddr[e.addr]);
          delete liveByAddr[e.addr];
        } else {
          elements.push({addr: e.addr, size: e.size, frames: e.frames || []});
          initial.push(elements.length - 1);
          actions.push(elements.length - 1);
        }
      }
    }
    for (const seg of snapshot.segments || []) {
      for (const b of seg.blocks || []) {
        if (b.state === 'active_allocated' && !(b.address in liveByAddr)) {
          elements.push({addr: b.address, size: b.requested_size || b.size, frames: b.frames || []});
          initial.push(elements.length - 1);
        }
      }
    }
    const drawn = new Set(
      elements.map((e, i) => [e.size, i]).sort((a, b) => b[0] - a[0]).slice(0, MAX_DRAWN).map(x => x[1]),
    );
    const bands = {};
    const current = [];
    let t = 0;
    let total = 0;
    let maxTotal = 0;
    function add(i) {
      if (drawn.has(i)) {
        bands[i] = {elem: i, ts: [t], offs: [total]};
        current.push(i);
        total += elements[i].size;
      }
    }
    for (const i of initial) add(i);
    maxTotal = total;
    for (const i of actions) {
      if (!drawn.has(i)) continue;
      const pos = current.lastIndexOf(i);
      t += 1;
      if (pos === -1) {
        add(i);
      } else {
        const size = elements[i].size;
        const band = bands[i];
        band.ts.push(t);
        band.offs.push(band.offs[band.offs.length - 1]);
        current.splice(pos, 1);
        for (let j = pos; j < current.length; j++) {
          const above = bands[current[j]];
          const last = above.offs[above.offs.length - 1];
          above.ts.push(t, t + 1);
          above.offs.push(last, last - size);
        }
        if (pos < current.length) t += 1;
        total -= size;
      }
      maxTotal = Math.max(maxTotal, total);
    }
    for (const i of current) {
      const band = bands[i];
      band.ts.push(t);
      band.offs.push(band.offs[band.offs.length - 1]);
    }
    return {elements, bands: Object.values(bands), steps: Math.max(t, 1), maxTotal};
  }

  function drawTimeline(parent, snapshot, onHover) {
    const data = timeline(snapshot);
    const W = 1000, H = 300, LEFT = 90, BOTTOM = 20;
    const svg = svgEl('svg', {id: 'xpu-host-timeline', viewBox: `0 0 ${W} ${H + BOTTOM}`, width: '100%', style: 'max-height: 45vh; background: #fff; border: 1px solid #ccc'});
    const plotW = W - LEFT;
    const maxY = data.maxTotal || 1;
    const x = t => LEFT + (t / data.steps) * plotW;
    const y = v => H - (v / maxY) * (H - 10);
    for (const band of data.bands) {
      const size = data.elements[band.elem].size;
      const bottom = band.ts.map((t, k) => `${x(t)},${y(band.offs[k])}`);
      const top = band.ts.map((t, k) => `${x(t)},${y(band.offs[k] + size)}`).reverse();
      const polygon = svgEl('polygon', {points: bottom.concat(top).join(' '), fill: COLORS[band.elem % COLORS.length], 'data-addr': hex(data.elements[band.elem].addr)});
      polygon.addEventListener('mouseover', () => onHover(data.elements[band.elem]));
      svg.appendChild(polygon);
    }
    svg.appendChild(svgEl('line', {x1: LEFT, y1: H, x2: W, y2: H, stroke: '#333'}));
    svg.appendChild(svgEl('line', {x1: LEFT, y1: 0, x2: LEFT, y2: H, stroke: '#333'}));
    for (const v of [0, maxY / 2, maxY]) {
      const label = svgEl('text', {x: LEFT - 6, y: y(v) + 4, 'text-anchor': 'end', 'font-size': 11, 'font-family': 'sans-serif'});
      label.textContent = formatSize(Math.round(v)).split(' (')[0];
      svg.appendChild(label);
    }
    const caption = svgEl('text', {x: LEFT + plotW / 2, y: H + 15, 'text-anchor': 'middle', 'font-size': 11, 'font-family': 'sans-serif'});
    caption.textContent = `allocations and frees in order (${data.elements.length} allocations, peak ${formatSize(data.maxTotal)})`;
    svg.appendChild(caption);
    parent.appendChild(svg);
  }

  function drawSegments(parent, snapshot, onHover) {
    const segments = snapshot.segments || [];
    const largest = Math.max(1, ...segments.map(s => s.total_size));
    const rowH = 14, W = 1000, LABEL = 330;
    const svg = svgEl('svg', {id: 'xpu-host-segments', viewBox: `0 0 ${W} ${Math.max(1, segments.length) * rowH + 4}`, width: '100%', style: 'max-height: 30vh; background: #fff; border: 1px solid #ccc'});
    segments.forEach((seg, i) => {
      const state = (seg.blocks && seg.blocks[0] && seg.blocks[0].state) || 'inactive';
      const rect = svgEl('rect', {x: LABEL, y: i * rowH + 2, width: Math.max(1, (seg.total_size / largest) * (W - LABEL - 4)), height: rowH - 3, fill: STATE_COLORS[state] || '#999'});
      rect.addEventListener('mouseover', () => onHover({addr: seg.address, size: seg.total_size, frames: seg.frames || [], state}));
      svg.appendChild(rect);
      const label = svgEl('text', {x: 2, y: i * rowH + 12, 'font-size': 11, 'font-family': 'monospace'});
      label.textContent = `${hex(seg.address)} ${formatSize(seg.total_size).split(' (')[0]} ${state}`;
      svg.appendChild(label);
    });
    parent.appendChild(svg);
  }

  function table(id, header, rows) {
    const t = el('table', {id, style: 'border-collapse: collapse; font-family: monospace; font-size: 12px'});
    const head = el('tr');
    for (const h of header) head.appendChild(el('th', {style: 'text-align: left; border-bottom: 1px solid #999; padding: 0 8px'}, h));
    t.appendChild(head);
    for (const row of rows) {
      const tr = el('tr');
      for (const cell of row.cells) tr.appendChild(el('td', {style: 'padding: 0 8px; white-space: nowrap'}, String(cell)));
      if (row.title) tr.setAttribute('title', row.title);
      t.appendChild(tr);
    }
    return t;
  }

  function render(root, snapshot) {
    const events = (snapshot.device_traces && snapshot.device_traces[0]) || [];
    const segments = snapshot.segments || [];
    const held = segments.reduce((a, s) => a + s.total_size, 0);
    const allocated = segments.reduce((a, s) => a + (s.allocated_size || 0), 0);
    const info = snapshot.xpu_host || {};
    root.appendChild(el('h2', {style: 'font-family: sans-serif; margin: 4px 0'}, 'Pinned host memory (xpu_caching_host_allocator)'));
    root.appendChild(el('p', {id: 'xpu-host-summary', style: 'font-family: sans-serif; margin: 4px 0'},
      `${segments.length} blocks held, ${formatSize(held)}; ${formatSize(allocated)} allocated; ` +
      `${events.length} trace entries` + (info.library_version ? `; library ${info.library_version}` : '') +
      '. Offline view: PyTorch\'s viewer could not be loaded.'));
    const details = el('pre', {id: 'xpu-host-details', style: 'height: 6em; overflow: auto; background: #f6f6f6; margin: 4px 0'}, 'Hover over an allocation or a block to see where it was allocated.');
    const hover = e => {
      details.textContent = `${hex(e.addr)} ${formatSize(e.size)}${e.state ? ' ' + e.state : ''}\n${stackText(e.frames)}`;
    };
    root.appendChild(el('h3', {style: 'font-family: sans-serif; margin: 4px 0'}, 'Active memory timeline'));
    drawTimeline(root, snapshot, hover);
    root.appendChild(details);
    root.appendChild(el('h3', {style: 'font-family: sans-serif; margin: 4px 0'}, 'Blocks held now'));
    drawSegments(root, snapshot, hover);
    root.appendChild(table('xpu-host-blocks', ['address', 'bytes', 'state', 'pool', 'allocated at'],
      segments.map(s => ({
        cells: [hex(s.address), s.total_size, (s.blocks[0] || {}).state, `(${(s.segment_pool_id || [0, 0]).join(', ')})`, topFrame(s.frames)],
        title: stackText(s.frames),
      }))));
    const listed = events.slice(-MAX_LISTED);
    root.appendChild(el('h3', {style: 'font-family: sans-serif; margin: 4px 0'},
      `Trace (${events.length} entries${listed.length < events.length ? `, the last ${listed.length} listed` : ''})`));
    const first = events.length ? events[0].time_us : 0;
    root.appendChild(table('xpu-host-trace', ['#', 'action', 'address', 'bytes', 'µs', 'where'],
      listed.map((e, k) => ({
        cells: [events.length - listed.length + k, e.action, hex(e.addr), e.size, e.time_us - first, topFrame(e.frames)],
        title: stackText(e.frames),
      }))));
  }

  function show() {
    const root = document.getElementById('xpu-host-offline');
    if (!root || root.dataset.rendered) return;
    root.dataset.rendered = '1';
    root.hidden = false;
    try {
      const snapshot = JSON.parse(document.getElementById('xpu-host-snapshot').textContent);
      render(root, snapshot);
    } catch (error) {
      root.appendChild(el('pre', {id: 'xpu-host-error'}, `Could not draw the snapshot: ${error}`));
    }
  }

  // PyTorch's viewer adds its <select>s to <body> once its modules loaded.
  function pytorchViewerShown() {
    return document.querySelector('body > select') !== null;
  }

  const root = document.getElementById('xpu-host-offline');
  if (root && root.dataset.wait === '0') {
    show();
  } else {
    const check = () => {
      if (!pytorchViewerShown()) show();
    };
    window.addEventListener('load', check);
    setTimeout(check, 3000);
    // If PyTorch's viewer comes after all (a slow network), it takes the page.
    new MutationObserver(() => {
      if (pytorchViewerShown() && root) root.hidden = true;
    }).observe(document.body, {childList: true});
  }
})();
