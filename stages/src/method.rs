//! The built-in methods by name: what each is called in `metrics.json` and params, how
//! tables show it and where it stands when a table lists every method present. One enum
//! owns all three, so a method cannot be spelt one way in a kind and another in a table.
//!
//! A method of one's own (a `command` stage's `method`) is no variant: tables show it as
//! written, after the built-in methods that have a place ([`order_key`]).

/// A method a built-in kind's runs report (each kind lists its own in
/// `StageKind::METHODS`), or `identity`, the reference estimate of T6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// `train`: the trusted examples alone.
    TrustedOnly,
    /// `train`: cross-entropy on the noisy labels, no correction.
    Ce,
    /// `train`: cross-entropy against smoothed labels.
    LabelSmoothing,
    /// `train`: forward correction with C estimated from anchor points.
    Forward,
    /// `train`: forward correction with C estimated on the trusted examples.
    ForwardGold,
    /// `train`: the confusion matrix of a model trained on the noisy labels.
    Confusion,
    /// `train`: Gold Loss Correction.
    Glc,
    /// `train_mlc`: Meta Loss Correction, textbook step.
    Mlc,
    /// `train_mlc`: Meta Loss Correction as the released code steps.
    MlcOfficial,
    /// `train_soft_labels`: one learned label per example.
    SoftLabels,
    /// `distill`: a student of a trained teacher.
    Distill,
    /// `train`: forward correction with the true C.
    Ideal,
    /// `train_soft_labels`: one learned label per class.
    SoftLabelsPerClass,
    /// No method: the identity matrix as an estimate of C (T6's reference).
    Identity,
}

impl Method {
    pub const ALL: [Method; 14] = [
        Method::TrustedOnly,
        Method::Ce,
        Method::LabelSmoothing,
        Method::Forward,
        Method::ForwardGold,
        Method::Confusion,
        Method::Glc,
        Method::Mlc,
        Method::MlcOfficial,
        Method::SoftLabels,
        Method::Distill,
        Method::Ideal,
        Method::SoftLabelsPerClass,
        Method::Identity,
    ];

    /// The name in `metrics.json`, params and CSV.
    pub fn name(self) -> &'static str {
        match self {
            Method::TrustedOnly => "trusted_only",
            Method::Ce => "ce",
            Method::LabelSmoothing => "label_smoothing",
            Method::Forward => "forward",
            Method::ForwardGold => "forward_gold",
            Method::Confusion => "confusion",
            Method::Glc => "glc",
            Method::Mlc => "mlc",
            Method::MlcOfficial => "mlc_official",
            Method::SoftLabels => "soft_labels",
            Method::Distill => "distill",
            Method::Ideal => "ideal",
            Method::SoftLabelsPerClass => "soft_labels_per_class",
            Method::Identity => "identity",
        }
    }

    /// How tables and figures show it (their writers escape it for LaTeX and Markdown).
    pub fn display(self) -> &'static str {
        match self {
            Method::TrustedOnly => "Trusted only",
            Method::Ce => "No correction (CE)",
            Method::LabelSmoothing => "Label smoothing",
            Method::Forward => "Forward",
            Method::ForwardGold => "Forward gold",
            Method::Confusion => "Confusion matrix",
            Method::Glc => "GLC",
            Method::Mlc => "MLC",
            Method::MlcOfficial => "MLC (official code)",
            Method::SoftLabels => "Soft labels",
            Method::Distill => "Distillation",
            Method::Ideal => "Ideal (true C)",
            Method::SoftLabelsPerClass => "Soft labels (per class)",
            Method::Identity => "Identity",
        }
    }

    /// Its column when a table lists every method present; `None` places it after those
    /// that have one, by name among the methods of one's own. `ideal`,
    /// `soft_labels_per_class` and `identity` have none: that is where the published
    /// tables show them (`ideal` last in T4).
    pub fn place(self) -> Option<usize> {
        match self {
            Method::TrustedOnly => Some(0),
            Method::Ce => Some(1),
            Method::LabelSmoothing => Some(2),
            Method::Forward => Some(3),
            Method::ForwardGold => Some(4),
            Method::Confusion => Some(5),
            Method::Glc => Some(6),
            Method::Mlc => Some(7),
            Method::MlcOfficial => Some(8),
            Method::SoftLabels => Some(9),
            Method::Distill => Some(10),
            Method::Ideal | Method::SoftLabelsPerClass | Method::Identity => None,
        }
    }

    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// How tables show the method named `name`: a built-in method's display name, a method
/// of one's own as written.
pub fn display_name(name: &str) -> &str {
    Method::from_name(name).map_or(name, |m| m.display())
}

/// The sort key of the method named `name` when a table lists every method present: the
/// built-in methods by [`Method::place`], then the others by name.
pub fn order_key(name: &str) -> (usize, String) {
    let place = Method::from_name(name).and_then(Method::place);
    (place.unwrap_or(usize::MAX), name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_places_and_display_names_are_distinct() {
        let mut names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
        let mut shown: Vec<_> = Method::ALL.iter().map(|m| m.display()).collect();
        let mut places: Vec<_> = Method::ALL.iter().filter_map(|m| m.place()).collect();
        for v in [&mut names, &mut shown] {
            v.sort();
            v.dedup();
            assert_eq!(v.len(), Method::ALL.len());
        }
        let n = places.len();
        places.sort();
        places.dedup();
        assert_eq!(places.len(), n);
        for m in Method::ALL {
            assert_eq!(Method::from_name(m.name()), Some(m));
        }
    }

    #[test]
    fn methods_of_ones_own_show_as_written_after_the_placed_ones() {
        assert_eq!(display_name("nearest_centroid"), "nearest_centroid");
        assert_eq!(display_name("glc"), "GLC");
        assert!(order_key("distill") < order_key("aaa"));
        assert!(order_key("aaa") < order_key("ideal"));
    }
}
