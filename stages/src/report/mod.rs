//! Tables and figures.

pub mod teacher;

pub use teacher::TeacherInfo;
