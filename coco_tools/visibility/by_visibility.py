"""Where the shipped detector's AP50 goes on a synthetic shapes set, by visibility and by size
(README, "The shipped detector": the occlusion and visible-side figures).

Needs per-object unoccluded pixel counts, which `mixdet synth` does not write: apply
synth_visibility.patch (from the repository root: `git apply coco_tools/visibility/synth_visibility.patch`),
run `cargo test --release -p mixdet-train --lib scratch_dump` (writes /tmp/val7_stats.txt for
`mixdet synth --seed 7 --val 500`), revert the patch, then

    python3 coco_tools/visibility/by_visibility.py data/val7/annotations/instances_val.json \
        /tmp/val7_stats.txt <detections.json from mixdet eval --save-results>

Prints the found / right-class shares per visibility and size bin and writes
gt_ignore_vis{0.25,0.50}.json (objects less visible than that marked iscrowd) for
`mixdet eval --gt gt_ignore_vis0.50.json --results <detections> --iou-thrs 0.5`.
"""
import json, sys, collections
gt = json.load(open(sys.argv[1]))
stats = [l.split() for l in open(sys.argv[2]).read().splitlines()]
anns = gt['annotations']
assert len(anns) == len(stats), (len(anns), len(stats))
for a, s in zip(anns, stats):
    assert int(s[0]) == a['image_id'] and int(s[1]) == a['category_id'] and int(s[6]) == a['area'], (a, s)
    a['vis'] = int(s[6]) / int(s[7]); a['full'] = int(s[7]); a['r'] = float(s[8])
dets = json.load(open(sys.argv[3]))
by_img = collections.defaultdict(list)
for d in dets: by_img[d['image_id']].append(d)
def iou(a, b):
    ax1, ay1 = a[0] + a[2], a[1] + a[3]; bx1, by1 = b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0])); ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    i = iw * ih; u = a[2] * a[3] + b[2] * b[3] - i
    return i / u if u > 0 else 0
def bucket(a):
    v = a['vis']
    return 'vis<0.25' if v < 0.25 else 'vis<0.5' if v < 0.5 else 'vis<0.75' if v < 0.75 else 'vis>=0.75'
def sz(a):
    return 'small' if a['area'] < 1024 else 'medium' if a['area'] < 9216 else 'large'
def matches(a):
    """Detections with score >= 0.3 at IoU >= 0.5 with `a`, any class, and the top-scoring one."""
    ds = [d for d in by_img[a['image_id']] if d['score'] >= 0.3 and iou(d['bbox'], a['bbox']) >= 0.5]
    return ds, max(ds, key=lambda d: d['score']) if ds else None
def tally(t, a, ds, top):
    # t = [objects, localized (any class), top detection of the right class, any of the right class]
    t[0] += 1
    if top:
        t[1] += 1
        t[2] += top['category_id'] == a['category_id']
        t[3] += any(d['category_id'] == a['category_id'] for d in ds)
def row(k, t):
    n, l, r, c = t
    print('%-22s %6d %6.3f %9.3f %9.3f %9.3f' % (k, n, n / len(anns), l / n, r / n, c / n))
tab = collections.defaultdict(lambda: [0, 0, 0, 0])
for a in anns:
    ds, top = matches(a)
    for key in (bucket(a), sz(a) + ' ' + bucket(a), 'all'):
        tally(tab[key], a, ds, top)
print('%-22s %6s %6s %9s %9s %9s' % ('bin', 'n', 'share', 'localized', 'top-ok', 'any-ok'))
for k in sorted(tab):
    row(k, tab[k])
for thr in (0.25, 0.5):
    g2 = dict(gt); g2['annotations'] = [dict(a, iscrowd=1 if a['vis'] < thr else 0) for a in anns]
    for a in g2['annotations']:
        for k in ('vis', 'full', 'r'): a.pop(k)
    json.dump(g2, open('gt_ignore_vis%.2f.json' % thr, 'w'))
print()
tab = collections.defaultdict(lambda: [0, 0, 0, 0])
conf = collections.Counter()
for a in anns:
    if a['vis'] < 0.75: continue
    s = a['area'] ** 0.5
    k = 'side<8' if s < 8 else 'side<12' if s < 12 else 'side<16' if s < 16 else 'side<24' if s < 24 else 'side<32' if s < 32 else 'side>=32'
    ds, top = matches(a)
    tally(tab[k], a, ds, top)
    if top and s < 16 and top['category_id'] != a['category_id']: conf[(a['category_id'], top['category_id'])] += 1
for k in sorted(tab, key=lambda k: (len(k), k)):
    row(k, tab[k])
names = {c['id']: c['name'] for c in gt['categories']}
print([(names[a], names[b], n) for (a, b), n in conf.most_common(10)])
