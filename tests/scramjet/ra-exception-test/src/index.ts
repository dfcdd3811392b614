class TestException extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TestException";
  }
}

// Fails as it is called.
export default function () {
  throw new TestException("This exception should appear on stderr");
}
