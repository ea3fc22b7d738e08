//! The union-find of channel atoms that the analysis joins into channel
//! spaces.
//!
//! An *atom* is a run of channels of one tensor. Atoms joined channel by
//! channel form a class (a channel space) that gets one physical layout: the
//! class's atoms are padded alike. A class can be cut (every member atom is
//! split at the same offsets, so a Split of one tensor cuts the tensors it
//! is joined to), pinned (kept at its exact width, with the reason) or
//! marked as a gap (the analysis could not follow it). The union-find is our
//! own (not petgraph's) because a class must list its members: cutting one
//! atom of a space cuts all of them.

use super::ChannelMap;
use std::collections::BTreeSet;

/// Index of an atom.
pub type AtomId = usize;

#[derive(Debug, Clone)]
struct Atom {
    size: usize,
    children: Option<Vec<AtomId>>,
    parent: AtomId,
    /// On class roots: members of the class.
    members: Vec<AtomId>,
    /// On class roots: why the class is pinned.
    pins: BTreeSet<String>,
    /// On class roots: where the analysis could not follow the class (a gap
    /// of the tool, kept at its width like a pin but never counted as one).
    gaps: BTreeSet<String>,
    /// On class roots: the class is `m` copies of each channel of leaf
    /// `source` (a depthwise conv with channel multiplier `m`), so its
    /// physical width is `m` times the source's ([`Atoms::scaled`]).
    scale: Option<(AtomId, usize)>,
}

/// Every atom of one analysis, and the multiple free classes are padded to.
#[derive(Debug, Clone)]
pub struct Atoms {
    atoms: Vec<Atom>,
    multiple: usize,
}

impl Atoms {
    /// No atoms yet; free classes will be padded to `multiple`.
    pub fn new(multiple: usize) -> Atoms {
        Atoms { atoms: vec![], multiple }
    }

    /// Channels in atom `a` (a leaf or not).
    pub fn atom_size(&self, a: AtomId) -> usize {
        self.atoms[a].size
    }

    /// Why the class of `leaf` is pinned, and where the analysis could not
    /// follow it.
    pub fn reasons(&self, leaf: AtomId) -> (&BTreeSet<String>, &BTreeSet<String>) {
        let r = self.find(leaf);
        (&self.atoms[r].pins, &self.atoms[r].gaps)
    }

    /// A new atom of `size` channels, a class of its own.
    pub fn new_atom(&mut self, size: usize) -> AtomId {
        let id = self.atoms.len();
        self.atoms.push(Atom {
            size,
            children: None,
            parent: id,
            members: vec![id],
            pins: BTreeSet::new(),
            gaps: BTreeSet::new(),
            scale: None,
        });
        id
    }

    /// The layout of a depthwise conv's output with channel multiplier `m`
    /// over input `layout`: one new atom per input leaf, `m` times its size,
    /// whose class is padded to `m` times the leaf's physical width (group
    /// `p` of the padded conv makes outputs `p·m .. p·m + m`, so the output
    /// keeps the input's layout with each channel repeated `m` times). The
    /// relation holds while neither side is cut; [`Atoms::settle`] makes a
    /// pin on either side a pin on both.
    pub fn scaled(&mut self, layout: &[AtomId], m: usize) -> Vec<AtomId> {
        let leaves = self.leaves(layout);
        leaves
            .into_iter()
            .map(|l| {
                let b = self.new_atom(self.atoms[l].size * m);
                self.atoms[b].scale = Some((l, m));
                b
            })
            .collect()
    }

    /// Makes the classes tied by [`Atoms::scaled`] agree: a pin or a gap on
    /// one side holds the other at its exact width too, with the same
    /// reasons; a source that was cut after the relation was made, or a
    /// class tied to two sources, is a gap of the analysis.
    pub fn settle(&mut self) {
        const TWO: &str =
            "depthwise conv with channel multiplier whose output space is tied to two inputs (not analysed)";
        const CUT: &str = "input of a depthwise conv with channel multiplier, cut after it (not analysed)";
        loop {
            let mut changed = false;
            let roots: Vec<AtomId> = (0..self.atoms.len()).filter(|&a| self.atoms[a].parent == a).collect();
            for r in roots {
                let Some((src, _)) = self.atoms[r].scale else { continue };
                let sr = self.find(src);
                if self.atoms[src].children.is_some() && self.atoms[r].gaps.insert(CUT.into()) {
                    self.atoms[sr].gaps.insert(CUT.into());
                    changed = true;
                }
                if self.atoms[r].gaps.contains(TWO) && self.atoms[sr].gaps.insert(TWO.into()) {
                    changed = true;
                }
                for (from, to) in [(r, sr), (sr, r)] {
                    let (pins, gaps) = (self.atoms[from].pins.clone(), self.atoms[from].gaps.clone());
                    let before = (self.atoms[to].pins.len(), self.atoms[to].gaps.len());
                    self.atoms[to].pins.extend(pins);
                    self.atoms[to].gaps.extend(gaps);
                    changed |= before != (self.atoms[to].pins.len(), self.atoms[to].gaps.len());
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// The root of `a`'s class.
    pub fn find(&self, mut a: AtomId) -> AtomId {
        while self.atoms[a].parent != a {
            a = self.atoms[a].parent;
        }
        a
    }

    /// The leaf atoms of `layout` in channel order (cut atoms replaced by
    /// their parts).
    pub fn leaves(&self, layout: &[AtomId]) -> Vec<AtomId> {
        // iterative: a space cut many times must not overflow the stack
        let mut out = vec![];
        let mut stack: Vec<AtomId> = layout.iter().rev().copied().collect();
        while let Some(a) = stack.pop() {
            match &self.atoms[a].children {
                Some(c) => stack.extend(c.iter().rev()),
                None => out.push(a),
            }
        }
        out
    }

    /// Channels in `layout`.
    pub fn size(&self, layout: &[AtomId]) -> usize {
        layout.iter().map(|&a| self.atoms[a].size).sum()
    }

    /// Splits every member of `leaf`'s class into parts of `sizes`.
    pub fn split_class(&mut self, leaf: AtomId, sizes: &[usize]) {
        let root = self.find(leaf);
        if let Some((src, _)) = self.atoms[root].scale {
            // the parts would lose the relation to their source
            const WHY: &str = "output of a depthwise conv with channel multiplier, cut (not analysed)";
            let sr = self.find(src);
            self.atoms[root].gaps.insert(WHY.into());
            self.atoms[sr].gaps.insert(WHY.into());
        }
        let members = self.atoms[root].members.clone();
        let pins = self.atoms[root].pins.clone();
        let gaps = self.atoms[root].gaps.clone();
        let mut firsts: Vec<AtomId> = vec![];
        for (mi, &mem) in members.iter().enumerate() {
            let kids: Vec<AtomId> = sizes.iter().map(|&s| self.new_atom(s)).collect();
            if mi == 0 {
                firsts = kids.clone();
                for &k in &kids {
                    self.atoms[k].pins = pins.clone();
                    self.atoms[k].gaps = gaps.clone();
                }
            } else {
                for (i, &k) in kids.iter().enumerate() {
                    self.union_leaves(firsts[i], k);
                }
            }
            self.atoms[mem].children = Some(kids);
        }
    }

    /// Makes sure `layout` has a leaf boundary at channel `offset`.
    pub fn cut(&mut self, layout: &[AtomId], offset: usize) {
        let mut start = 0;
        for l in self.leaves(layout) {
            let s = self.atoms[l].size;
            if offset > start && offset < start + s {
                self.split_class(l, &[offset - start, start + s - offset]);
                return;
            }
            start += s;
        }
    }

    /// Leaves of `layout` covering channels [from, to) (boundaries must be cut).
    pub fn range(&self, layout: &[AtomId], from: usize, to: usize) -> Vec<AtomId> {
        let mut start = 0;
        let mut out = vec![];
        for l in self.leaves(layout) {
            let s = self.atoms[l].size;
            if start >= from && start + s <= to && s > 0 {
                out.push(l);
            }
            start += s;
        }
        out
    }

    /// Joins the classes of leaves `a` and `b` (same size) into one, with
    /// both classes' pins and gaps.
    pub fn union_leaves(&mut self, a: AtomId, b: AtomId) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        let (big, small) =
            if self.atoms[ra].members.len() >= self.atoms[rb].members.len() { (ra, rb) } else { (rb, ra) };
        self.atoms[small].parent = big;
        let mem = std::mem::take(&mut self.atoms[small].members);
        self.atoms[big].members.extend(mem);
        let pins = std::mem::take(&mut self.atoms[small].pins);
        self.atoms[big].pins.extend(pins);
        let gaps = std::mem::take(&mut self.atoms[small].gaps);
        self.atoms[big].gaps.extend(gaps);
        match (self.atoms[big].scale, self.atoms[small].scale.take()) {
            (None, s) => self.atoms[big].scale = s,
            (Some((x, m)), Some((y, k))) if (self.find(x), m) != (self.find(y), k) => {
                self.atoms[big].gaps.insert(
                    "depthwise conv with channel multiplier whose output space is tied to two inputs (not analysed)"
                        .into(),
                );
            }
            _ => {}
        }
    }

    /// Joins two layouts of equal total size channel by channel: cuts each
    /// where the other has a boundary, then unites the leaves pairwise.
    /// Returns false, joining nothing, when the sizes differ (a graph whose
    /// declared shapes contradict each other) or a cut makes no progress.
    #[must_use]
    pub fn join(&mut self, a: &[AtomId], b: &[AtomId]) -> bool {
        let total = self.size(a);
        if total != self.size(b) {
            return false;
        }
        loop {
            let la = self.leaves(a);
            let lb = self.leaves(b);
            let cuts = |l: &[AtomId]| -> BTreeSet<usize> {
                l.iter()
                    .scan(0, |s, &x| {
                        *s += self.atoms[x].size;
                        Some(*s)
                    })
                    .filter(|&c| c > 0 && c < total)
                    .collect()
            };
            let (ca, cb) = (cuts(&la), cuts(&lb));
            let (side, at) = match (cb.difference(&ca).next(), ca.difference(&cb).next()) {
                (Some(&c), _) => (a, c),
                (None, Some(&c)) => (b, c),
                (None, None) => break,
            };
            let before = self.leaves(side).len();
            self.cut(side, at);
            if self.leaves(side).len() == before {
                return false; // the cut did not take: never loop on it
            }
        }
        let (la, lb) = (self.leaves(a), self.leaves(b));
        // zero-size leaves have no channel to pair: unite the sized ones
        let sized = |l: Vec<AtomId>| l.into_iter().filter(|&x| self.atoms[x].size > 0).collect::<Vec<_>>();
        let (la, lb) = (sized(la), sized(lb));
        if la.len() != lb.len() {
            return false;
        }
        for (x, y) in la.into_iter().zip(lb) {
            self.union_leaves(x, y);
        }
        true
    }

    /// Pins every class `layout` touches, for `why`.
    pub fn pin(&mut self, layout: &[AtomId], why: &str) {
        for l in self.leaves(layout) {
            let r = self.find(l);
            self.atoms[r].pins.insert(why.to_string());
        }
    }

    /// Marks `layout` as a place the analysis could not follow.
    pub fn gap(&mut self, layout: &[AtomId], why: &str) {
        for l in self.leaves(layout) {
            let r = self.find(l);
            self.atoms[r].gaps.insert(why.to_string());
        }
    }

    /// True when the class of `leaf` keeps its exact width.
    pub fn fixed(&self, leaf: AtomId) -> bool {
        let r = self.find(leaf);
        !self.atoms[r].pins.is_empty() || !self.atoms[r].gaps.is_empty()
    }

    /// Physical channels of leaf `l`: its size, rounded up to the multiple
    /// (or `m` times its source's width, [`Atoms::scaled`]) unless its class
    /// is pinned or a gap.
    pub fn leaf_width(&self, l: AtomId) -> usize {
        let s = self.atoms[l].size;
        if self.fixed(l) {
            return s;
        }
        match self.atoms[self.find(l)].scale {
            Some((src, m)) => m * self.leaf_width(src),
            None => s.div_ceil(self.multiple) * self.multiple,
        }
    }

    /// The logical → physical channel map of `layout`: each leaf's channels
    /// first, its padding after them.
    pub fn map_of(&self, layout: &[AtomId]) -> ChannelMap {
        let mut map = vec![];
        let mut len = 0;
        for l in self.leaves(layout) {
            let s = self.atoms[l].size;
            map.extend(len..len + s);
            len += self.leaf_width(l);
        }
        ChannelMap { map, len, axis: 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_class_pads_to_the_multiple_and_a_pinned_one_keeps_its_width() {
        let mut a = Atoms::new(8);
        let (x, y) = (a.new_atom(19), a.new_atom(5));
        assert_eq!(a.map_of(&[x, y]), ChannelMap { map: (0..19).chain(24..29).collect(), len: 32, axis: 1 });
        a.pin(&[y], "graph output");
        assert!(a.fixed(y) && !a.fixed(x));
        assert_eq!(a.map_of(&[x, y]).len, 29);
        assert_eq!(a.reasons(y).0.iter().collect::<Vec<_>>(), ["graph output"]);
    }

    #[test]
    fn joining_cuts_both_layouts_at_each_other_s_boundaries() {
        // [10 | 6] joined with [4 | 12]: both become [4 | 6 | 6], joined part by part
        let mut a = Atoms::new(8);
        let (p, q) = (vec![a.new_atom(10), a.new_atom(6)], vec![a.new_atom(4), a.new_atom(12)]);
        assert!(a.join(&p, &q));
        let (lp, lq) = (a.leaves(&p), a.leaves(&q));
        let sizes = |l: &[AtomId], a: &Atoms| l.iter().map(|&x| a.atom_size(x)).collect::<Vec<_>>();
        assert_eq!(sizes(&lp, &a), [4, 6, 6]);
        assert_eq!(sizes(&lq, &a), [4, 6, 6]);
        for (x, y) in lp.iter().zip(&lq) {
            assert_eq!(a.find(*x), a.find(*y));
        }
        // pinning one side pins the other: they are one space
        a.pin(&q[..1], "Reshape");
        assert!(a.fixed(lp[0]) && !a.fixed(lp[1]));
    }

    #[test]
    fn cutting_one_member_cuts_every_member_of_its_class() {
        let mut a = Atoms::new(8);
        let (x, y) = (a.new_atom(12), a.new_atom(12));
        a.union_leaves(x, y);
        a.cut(&[x], 5);
        assert_eq!(a.leaves(&[y]).iter().map(|&l| a.atom_size(l)).collect::<Vec<_>>(), [5, 7]);
        assert_eq!(a.range(&[y], 5, 12).len(), 1);
        assert_eq!(a.size(&[x]), 12);
        assert_eq!(a.map_of(&[y]).len, 16);
    }
}
