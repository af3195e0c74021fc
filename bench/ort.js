// ort.js - ONNX Runtime (f32, the npm package onnxruntime-node) against elide on the
// prefill of the benchmark's Llama at one shape (bench/ortpeer.sh).  It starts elide's
// bench_prefill (bench/prefill.c) as a child process and, for each thread count:
//   1. creates an ONNX Runtime session of each graph bench_onnx wrote (intra-op
//      threads set to the count, inter-op 1, sequential execution, graph
//      optimisation "all");
//   2. checks that each computes what elide computes: ONNX Runtime's logits for the
//      prompt against elide's (relative error max|a - b| / max|b| <= 1e-4 and the
//      same argmax); a graph that fails the check fails the row and is not timed;
//   3. warms all up, then runs ROUNDS rounds; in a round each engine (elide, each
//      graph) has one turn, the order rotating from round to round, with a pause
//      before each turn (the engines' worker threads may spin for a while after a
//      run).  A turn is REPS prefills back to back, REPS chosen per engine in the
//      warm-up so that a turn lasts about TURN_S seconds (a 10 ms prefill timed once,
//      right after the other engine has filled the caches and the pause has let the
//      CPUs idle, varied by 3x from round to round); the turn's time is the median of
//      its prefills.  A round's ratio is ONNX Runtime's seconds / elide's; the figures
//      are medians over rounds, and the row's ratio is the one against the graph ONNX
//      Runtime ran fastest.
// ONNX Runtime is timed around session.run() from JavaScript: the call overhead of the
// binding is measured on a one-Add model with the same options and reported beside.
// Usage: node ort.js NODE_MODULES TINY.onnx NAME N ROUNDS THREADS OUT.json BENCH_PREFILL WEIGHTS GRAPH=MODEL.onnx...
//   (THREADS: a comma-separated list such as 1,2; GRAPH: a name for the graph)
'use strict';
const cp = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');

const [mods, tiny, name, nArg, roundsArg, threadsArg, outJson, driver, weights, ...graphArgs] = process.argv.slice(2);
const GRAPHS = graphArgs.map((g) => ({ graph: g.slice(0, g.indexOf('=')), model: g.slice(g.indexOf('=') + 1) }));
if (!GRAPHS.length || GRAPHS.some((g) => !g.graph || !g.model)) {
	console.error('usage: node ort.js NODE_MODULES TINY.onnx NAME N ROUNDS THREADS OUT.json BENCH_PREFILL WEIGHTS GRAPH=MODEL.onnx...');
	process.exit(2);
}
const ort = require(path.resolve(mods, 'onnxruntime-node'));
const ortVersion = JSON.parse(fs.readFileSync(path.resolve(mods, 'onnxruntime-node', 'package.json'))).version;
const N = Number(nArg), ROUNDS = Number(roundsArg);
const THREADS = threadsArg.split(',').map(Number);
const PAUSE_MS = 250;
const TURN_S = 0.5;
const MAX_REPS = 50;
const TOL = 1e-4;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
	const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
	return s.length % 2 ? s[m] : 0.5 * (s[m - 1] + s[m]);
};
const argmax = (x) => x.reduce((best, v, i) => (v > x[best] ? i : best), 0);

// elide's driver: one command, one answer line
class Elide {
	constructor() {
		this.p = cp.spawn(driver, [weights, String(N)], { stdio: ['pipe', 'pipe', 'inherit'] });
		this.lines = readline.createInterface({ input: this.p.stdout })[Symbol.asyncIterator]();
	}
	async line() {
		const r = await this.lines.next();
		if (r.done)
			throw new Error('bench_prefill exited');
		if (r.value.startsWith('error'))
			throw new Error('bench_prefill: ' + r.value);
		return r.value;
	}
	async ask(cmd) {
		this.p.stdin.write(cmd + '\n');
		return this.line();
	}
	quit() {
		this.p.stdin.end('quit\n');
	}
}

function options(th) {
	return {
		executionProviders: ['cpu'],
		intraOpNumThreads: th,
		interOpNumThreads: 1,
		executionMode: 'sequential',
		graphOptimizationLevel: 'all',
		enableCpuMemArena: true,
		enableMemPattern: true,
		logSeverityLevel: 3,
	};
}

async function timeRun(sess, feeds) {
	const t0 = process.hrtime.bigint();
	const r = await sess.run(feeds);
	const dt = Number(process.hrtime.bigint() - t0) * 1e-9;
	return [dt, r];
}

// median seconds of session.run() on the one-Add model: the binding's call overhead
async function overhead(th) {
	const sess = await ort.InferenceSession.create(tiny, options(th));
	const feeds = { x: new ort.Tensor('float32', new Float32Array([1]), [1]) };
	const ts = [];
	for (let i = 0; i < 220; i++) {
		const [dt] = await timeRun(sess, feeds);
		if (i >= 20)
			ts.push(dt);
	}
	await sess.release();
	return median(ts);
}

async function main() {
	const elide = new Elide();
	const first = await elide.line();
	const toks = first.split(' ').slice(1).map(Number);
	if (first.split(' ')[0] !== 'tokens' || toks.length !== N)
		throw new Error('bench_prefill did not print the prompt');
	const feeds = { tokens: new ort.Tensor('int64', BigInt64Array.from(toks.map(BigInt)), [N]) };
	const tmp = path.join(os.tmpdir(), `elide-ort-${process.pid}.f32`);
	const res = { name, prefill_tokens: N, rounds: ROUNDS, onnxruntime: ortVersion, threads: {} };
	let ok = true;
	const thr = (th) => `${th} thread${th > 1 ? 's' : ' '}`;
	for (const th of THREADS) {
		// 1. and 2.: the sessions and the check
		await elide.ask(`logits ${th} ${tmp}`);
		const buf = fs.readFileSync(tmp);
		const ref = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
		const row = { graphs: {} };
		res.threads[th] = row;
		const live = [];
		for (const g of GRAPHS) {
			const t0 = process.hrtime.bigint();
			let sess;
			try {
				sess = await ort.InferenceSession.create(g.model, options(th));
			} catch (err) {
				// a graph this ONNX Runtime cannot load (a contrib operator it lacks) is
				// left out; one that loads and computes something else fails the row
				console.log(`${name} ${thr(th)}  ONNX Runtime cannot load the ${g.graph} graph, left out: ${err.message}`);
				row.graphs[g.graph] = { error: err.message };
				continue;
			}
			const createS = Number(process.hrtime.bigint() - t0) * 1e-9;
			const [, out] = await timeRun(sess, feeds);
			const got = out.logits.data;
			let maxErr = 0, maxRef = 0, nan = false;
			for (let i = 0; i < ref.length; i++) {
				if (!Number.isFinite(got[i]))
					nan = true;
				maxErr = Math.max(maxErr, Math.abs(got[i] - ref[i]));
				maxRef = Math.max(maxRef, Math.abs(ref[i]));
			}
			const rel = nan || got.length !== ref.length ? Infinity : maxErr / (maxRef || 1);
			const check = { rel_err: rel, argmax_elide: argmax(ref), argmax_ort: argmax(got), tolerance: TOL };
			check.ok = rel <= TOL && check.argmax_elide === check.argmax_ort;
			console.log(`${name} ${thr(th)}  check: ONNX Runtime (${g.graph} graph) logits against elide's, ` +
				`relative error ${rel.toExponential(2)} (<= ${TOL}), argmax ${check.argmax_ort} / ${check.argmax_elide}: ` +
				(check.ok ? 'same' : 'DIFFERENT: this row fails'));
			row.graphs[g.graph] = { check, session_create_s: createS };
			if (check.ok) {
				live.push({ graph: g.graph, sess, times: [], ratio: [] });
			} else {
				row.check_failed = true;
				await sess.release();
			}
		}
		if (row.check_failed || !live.length) {
			ok = false;
			row.check_ok = false;
			for (const g of live)
				await g.sess.release();
			continue;
		}
		row.check_ok = true;
		// 3. warm-up (which sizes each engine's turn), then rounds in rotating order
		const once = new Map();
		once.set(null, async () => Number(await elide.ask(`run ${th}`)));
		for (const g of live)
			once.set(g, async () => (await timeRun(g.sess, feeds))[0]);
		const reps = new Map();
		for (const [g, run] of once) {
			let dt = Infinity;
			for (let i = 0; i < 3; i++)
				dt = Math.min(dt, await run());
			reps.set(g, Math.max(1, Math.min(MAX_REPS, Math.ceil(TURN_S / dt))));
		}
		const turn = async (g) => {
			const ts = [];
			for (let i = 0; i < reps.get(g); i++)
				ts.push(await once.get(g)());
			return median(ts);
		};
		row.prefills_per_turn = { elide: reps.get(null) };
		for (const g of live)
			row.prefills_per_turn[g.graph] = reps.get(g);
		const e = [];
		const engines = [null, ...live];
		for (let r = 0; r < ROUNDS; r++) {
			let te;
			const t = new Map();
			for (let i = 0; i < engines.length; i++) {
				const g = engines[(r + i) % engines.length];
				await sleep(PAUSE_MS);
				if (!g)
					te = await turn(null);
				else
					t.set(g, await turn(g));
			}
			e.push(N / te);
			for (const g of live) {
				g.times.push(N / t.get(g));
				g.ratio.push(t.get(g) / te);
			}
		}
		row.elide_prefill_tokens_per_s = median(e);
		let best = null;
		for (const g of live) {
			await g.sess.release();
			const o = row.graphs[g.graph];
			o.ort_prefill_tokens_per_s = median(g.times);
			o.paired_prefill_ratio = median(g.ratio);
			o.ratio_min = Math.min(...g.ratio);
			o.ratio_max = Math.max(...g.ratio);
			if (!best || o.ort_prefill_tokens_per_s > row.graphs[best].ort_prefill_tokens_per_s)
				best = g.graph;
			console.log(`${name} ${thr(th)}  prefill ${N} tokens: elide ${row.elide_prefill_tokens_per_s.toFixed(1)} tok/s, ` +
				`ONNX Runtime (${g.graph}) ${o.ort_prefill_tokens_per_s.toFixed(1)} tok/s, ratio ${o.paired_prefill_ratio.toFixed(2)} ` +
				`(rounds ${ROUNDS}, ${o.ratio_min.toFixed(2)}..${o.ratio_max.toFixed(2)})`);
		}
		// the row: against ONNX Runtime's fastest graph
		row.ort_graph = best;
		row.ort_prefill_tokens_per_s = row.graphs[best].ort_prefill_tokens_per_s;
		row.paired_prefill_ratio = row.graphs[best].paired_prefill_ratio;
		row.ratio_min = row.graphs[best].ratio_min;
		row.ratio_max = row.graphs[best].ratio_max;
		row.ort_call_overhead_s = await overhead(th);
		row.ort_overhead_fraction = row.ort_call_overhead_s / (N / row.ort_prefill_tokens_per_s);
		console.log(`${name} ${thr(th)}  ONNX Runtime call overhead ${(row.ort_call_overhead_s * 1e6).toFixed(0)} us ` +
			`(${(100 * row.ort_overhead_fraction).toFixed(3)}% of its prefill)`);
	}
	elide.quit();
	fs.rmSync(tmp, { force: true });
	fs.writeFileSync(outJson, JSON.stringify(res, null, 1) + '\n');
	return ok;
}

main().then((ok) => process.exit(ok ? 0 : 1), (err) => {
	console.error('ort.js: ' + err.message);
	process.exit(1);
});
