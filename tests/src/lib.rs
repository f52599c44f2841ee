//! netns lab
